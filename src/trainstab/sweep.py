"""Training a sweep of LRs: ``run_sweep(SweepConfig) -> SweepResult``.

The import path users write; the code lives in :mod:`trainstab.train.sweep` (docs/architecture.md).
"""

from __future__ import annotations

from trainstab.train.sweep import (
    StackDone,
    pool_context,
    preflight,
    run_sweep,
    run_sweeps,
    stacks,
    summarize,
    train_stack,
)

__all__ = [
    "StackDone",
    "pool_context",
    "preflight",
    "run_sweep",
    "run_sweeps",
    "stacks",
    "summarize",
    "train_stack",
]
