"""Benchmarks: scripts that print a table of measurements (docs/PERFORMANCE.md).

Each runs as `python bench/NAME.py` or `python -m bench.NAME` from a fresh clone (the package
is installed with the project, so `bench` imports from anywhere).
"""
