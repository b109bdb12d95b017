"""Benchmarks: scripts that print a table and write their numbers to bench/results/."""
