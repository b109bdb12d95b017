"""Measures of a run (Park et al. 2023, section 7) and their figures."""
