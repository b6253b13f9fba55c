"""The model contract: ``ModelSize``, what a factory is called with, and the first-step check of a model.

The import path users write; the code lives in :mod:`trainstab.train.models` (docs/architecture.md).
"""

from __future__ import annotations

from trainstab.train.models import (
    ModelSize,
    check_model,
    resolve_factory,
)

__all__ = [
    "ModelSize",
    "check_model",
    "resolve_factory",
]
