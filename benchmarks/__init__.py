"""Benchmark scripts: each writes results/<name>.json and regenerates its BENCHMARKS.md section."""
