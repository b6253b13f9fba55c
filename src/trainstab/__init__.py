"""trainstab: small-scale proxies for large-scale transformer training instabilities.

Train tiny language models at high learning rates on the CPU and measure what
predicts instability at scale (Wortsman et al. 2023): attention logit growth,
output logit divergence, LR sensitivity, gradient RMS against AdamW's epsilon.

Names are imported lazily, so ``import trainstab`` (and pytest start-up with
the plugin) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trainstab.core.environment import trainstab_version

#: The installed distribution's version, from its metadata ("unknown" in a source tree that was never installed).
__version__ = trainstab_version()

_EXPORTS = {
    "PAPER_LR_GRID": "trainstab.core.config",
    "ModelConfig": "trainstab.core.config",
    "SweepConfig": "trainstab.core.config",
    "TrainConfig": "trainstab.core.config",
    "TrainstabError": "trainstab.core.errors",
    "ModelCrashed": "trainstab.core.errors",
    "Inconclusive": "trainstab.core.errors",
    "TrainstabWarning": "trainstab.core.errors",
    "capture_attention": "trainstab.train.capture",
    "is_capturing": "trainstab.train.capture",
    "record_attention_logits": "trainstab.train.capture",
    "run_sweep": "trainstab.train.sweep",
    "SweepResult": "trainstab.core.results",
    "RunResult": "trainstab.core.results",
    "ReferenceLM": "trainstab.train.reference",
    "ReferenceTransformer": "trainstab.train.reference",
}

__all__ = [
    "PAPER_LR_GRID",
    "Inconclusive",
    "ModelConfig",
    "ModelCrashed",
    "ReferenceLM",
    "ReferenceTransformer",
    "RunResult",
    "SweepConfig",
    "SweepResult",
    "TrainConfig",
    "TrainstabError",
    "TrainstabWarning",
    "capture_attention",
    "is_capturing",
    "record_attention_logits",
    "run_sweep",
]

if TYPE_CHECKING:
    from trainstab.core.config import PAPER_LR_GRID, ModelConfig, SweepConfig, TrainConfig
    from trainstab.core.errors import Inconclusive, ModelCrashed, TrainstabError, TrainstabWarning
    from trainstab.core.results import RunResult, SweepResult
    from trainstab.train.capture import capture_attention, is_capturing, record_attention_logits
    from trainstab.train.reference import ReferenceLM, ReferenceTransformer
    from trainstab.train.sweep import run_sweep


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trainstab' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
