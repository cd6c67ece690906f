"""Tests of the benchmark suites (benchmarks/)."""
