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

_EXPORTS = {
    "PAPER_LR_GRID": "trainstab.config",
    "ModelConfig": "trainstab.config",
    "SweepConfig": "trainstab.config",
    "TrainConfig": "trainstab.config",
    "TrainstabError": "trainstab.errors",
    "ModelCrashed": "trainstab.errors",
    "Inconclusive": "trainstab.errors",
    "TrainstabWarning": "trainstab.errors",
    "capture_attention": "trainstab.capture",
    "is_capturing": "trainstab.capture",
    "record_attention_logits": "trainstab.capture",
    "run_sweep": "trainstab.sweep",
    "SweepResult": "trainstab.results",
    "RunResult": "trainstab.results",
    "ReferenceLM": "trainstab.reference",
    "ReferenceTransformer": "trainstab.reference",
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
    from trainstab.capture import capture_attention, is_capturing, record_attention_logits
    from trainstab.config import PAPER_LR_GRID, ModelConfig, SweepConfig, TrainConfig
    from trainstab.errors import Inconclusive, ModelCrashed, TrainstabError, TrainstabWarning
    from trainstab.reference import ReferenceLM, ReferenceTransformer
    from trainstab.results import RunResult, SweepResult
    from trainstab.sweep import run_sweep


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trainstab' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
