"""Benchmarks on real clips: the shift benchmark, confidence calibration, speed."""
