"""Performance benchmarks of adbench's data, metric, method and runner layers.

Run each script as a module from the repository root, e.g.
``python -m benchmarks.perf.methods --k 1 15``; ``common`` holds what they share and
``run_all`` runs them and rebuilds ``docs/performance.md`` from ``benchmarks/results/*.json``.
"""
