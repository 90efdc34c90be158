"""Benchmark sweeps (``*.yaml``), stored results (``results/``) and performance scripts."""
