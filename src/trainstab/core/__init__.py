"""Foundations: what a sweep is and measured (config, results, ladder sizes), files and untrusted input, errors,
the environment, and the tables of optimizers and a team's extensions. No torch; imports nothing above it."""
