"""Scenario files, their schema and the built-in town."""
