"""Training: the user's model built and stacked, the engine that steps it, attention capture, optimizers, sweeps
in a process pool or on Ray. The only package that imports torch."""
