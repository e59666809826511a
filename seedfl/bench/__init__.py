"""Benchmarks behind ``seedfl bench``: each returns JSON-able measurements and ratios.

They are measurements, not timed tests: numbers depend on the machine and on
whatever else it is doing, so each bench compares against baselines measured
in the same run.
"""
