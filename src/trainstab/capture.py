"""Attention capture: the max attention logit of every attention call a model makes, however it is written.

The import path users write; the code lives in :mod:`trainstab.train.capture` (docs/architecture.md).
"""

from __future__ import annotations

from trainstab.train.capture import (
    AttentionRecord,
    add_record,
    capture_attention,
    is_capturing,
    outside_capture,
    record_attention_logits,
    regroup_by_member,
    unwatched,
)

__all__ = [
    "AttentionRecord",
    "add_record",
    "capture_attention",
    "is_capturing",
    "outside_capture",
    "record_attention_logits",
    "regroup_by_member",
    "unwatched",
]
