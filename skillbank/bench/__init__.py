"""Benchmarks: curricula, baselines, metrics and result files (JSON with machine and versions)."""
