"""Tests of ztgate.evaluation.agentdojo."""
