"""Fuzzing a model's hyperparameters with Hypothesis: ``assert_stable`` and the settings strategies.

The import path users write; the code lives in :mod:`trainstab.explore.fuzz` (docs/architecture.md).
"""

from __future__ import annotations

from trainstab.explore.fuzz import (
    CAUSES,
    FUZZ_BATCH,
    FUZZ_STEPS,
    Outcome,
    assert_stable,
    describe,
    evaluate,
    evaluate_batch,
    explore,
    training_settings,
)

__all__ = [
    "CAUSES",
    "FUZZ_BATCH",
    "FUZZ_STEPS",
    "Outcome",
    "assert_stable",
    "describe",
    "evaluate",
    "evaluate_batch",
    "explore",
    "training_settings",
]
