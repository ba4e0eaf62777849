"""Evaluations of ztgate against public benchmarks (`ztgate eval ...`)."""
