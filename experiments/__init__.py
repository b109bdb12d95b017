"""Experiments: grids of runs over scenarios and seeds, scaling studies."""
