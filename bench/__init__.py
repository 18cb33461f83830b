"""Benchmarks run by `make bench`: timings belong here, never in tests."""
