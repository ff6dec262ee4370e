"""Loupe's benchmarks: run them with `python -m bench` (see bench/README.md)."""
