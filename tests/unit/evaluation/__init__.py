"""Tests of ztgate.evaluation."""
