"""The runtime: Ray start-up, the simulation driver, the command line."""
