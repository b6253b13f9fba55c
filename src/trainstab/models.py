"""The model contract: ``ModelSize``, what a factory is called with, and the first-step check of a model.

The import path users write; the code lives in :mod:`trainstab.train.models` (docs/architecture.md).
"""

from __future__ import annotations

from trainstab.train.models import (
    CAUSAL_SMALL_PARAMETER,
    CAUSAL_TOLERANCE,
    CAUSAL_ZERO_INIT_STD,
    HF_PREFIX,
    NO_ATTENTION_HINT,
    REFERENCE,
    STACKED,
    Factory,
    FunctionalStack,
    ModelSize,
    build_stack,
    build_template,
    check_model,
    own_parameter_name,
    resolve_factory,
)

__all__ = [
    "CAUSAL_SMALL_PARAMETER",
    "CAUSAL_TOLERANCE",
    "CAUSAL_ZERO_INIT_STD",
    "HF_PREFIX",
    "NO_ATTENTION_HINT",
    "REFERENCE",
    "STACKED",
    "Factory",
    "FunctionalStack",
    "ModelSize",
    "build_stack",
    "build_template",
    "check_model",
    "own_parameter_name",
    "resolve_factory",
]
