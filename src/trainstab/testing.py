"""The checks as pytest tests: ``parametrize_with_checks``, ``case``, ``expect_failure``, ``sweep_of``, the check
lists.

The import path users write; the code lives in :mod:`trainstab.pytest_plugin.testing` (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

from trainstab.checks.registry import battery_names
from trainstab.pytest_plugin.testing import (
    MUP_CHECK_NAMES,
    PAIRED_CHECK_NAMES,
    SCALING_CHECK_NAMES,
    STABILITY_FORECAST_NAMES,
    CheckFailed,
    ModelUnderTest,
    StabilityCheck,
    TrainingCrashed,
    cache_key,
    cached_sweep,
    case,
    evidence,
    expect_failure,
    parametrize_with_checks,
    sweep_of,
)


def __getattr__(name: str) -> Any:
    """``CHECK_NAMES``, the default set, computed on first use: a team's checks registered to run with the
    battery are in it (trainstab.checks.registry)."""
    if name == "CHECK_NAMES":
        return battery_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CHECK_NAMES",  # noqa: F822 (module __getattr__: a team's checks are in it)
    "MUP_CHECK_NAMES",
    "PAIRED_CHECK_NAMES",
    "SCALING_CHECK_NAMES",
    "STABILITY_FORECAST_NAMES",
    "CheckFailed",
    "ModelUnderTest",
    "StabilityCheck",
    "TrainingCrashed",
    "cache_key",
    "cached_sweep",
    "case",
    "evidence",
    "expect_failure",
    "parametrize_with_checks",
    "sweep_of",
]
