"""Exploration with Hypothesis: strategies over hyperparameters, the fuzzer and its map of unstable regions."""
