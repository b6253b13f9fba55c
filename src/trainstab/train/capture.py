"""Attention-logit capture: automatic for every common attention, a public hook for the rest.

Inside :func:`capture_attention` an :class:`~trainstab.train.attention_trace.AttentionTracer`
watches the forward pass at the ATen level and records, per attention call,
the max |pre-softmax logit| z_ij = <q_i, k_j> * scale over the unmasked
positions and the attention entropy, per batch element and head. It sees,
with no change to the model:

- ``F.scaled_dot_product_attention`` (boolean or additive masks, ``is_causal``,
  ``scale``, grouped-query attention), on every backend;
- ``nn.MultiheadAttention`` (``need_weights`` True or False) and torch's
  ``TransformerEncoderLayer`` / ``TransformerDecoderLayer`` (self- and cross-attention);
- hand-written ``softmax(q @ kᵀ * scale)`` in any spelling (``@``, ``matmul``,
  ``einsum``, ``bmm``), masked with ``masked_fill``, ``where`` or an additive mask;
- transformers' eager attention, soft-capped logits included (the pre-cap
  logits are recorded: those are the ones that grow).

The model's numbers are untouched: every op runs as called, under grad,
``no_grad`` or ``inference_mode``. Anything else (a custom kernel, a softmax
written as exp and sum, sigmoid attention) reports its logits with
:func:`record_attention_logits`; outside a capture that call costs one
attribute check and does nothing. Reported logits that also reach a
recognised softmax are recorded once. ``flex_attention`` is
recorded by :mod:`trainstab.train.flex_emulation` inside its scope, which trainstab's sweeps enter; other
higher-order operators (``torch.cond``), and flex outside that scope, cannot run under the tracer and stop
with a :class:`~trainstab.core.errors.TrainstabError` that says so. Wrap forward passes
only: a backward inside the block would record recomputed (checkpointed)
attention again.

Each attention call is one "layer", in call order. Records are (N, H), N the
batch rows (M*B for a stacked model), H the heads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from trainstab.core.errors import TrainstabError
from trainstab.train.attention_stats import AttentionRecord, sdpa_record
from trainstab.train.attention_trace import AttentionTracer

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


class _CaptureState:
    """The tracer of the capture in progress; ``None`` when none is active."""

    tracer: AttentionTracer | None = None


_STATE = _CaptureState()


@contextmanager
def capture_attention() -> Iterator[list[AttentionRecord]]:
    """Record attention statistics of every attention call made inside the block.

    Yields the list the records are appended to, one per call in call order.
    Only the ops run inside the block are watched, so steps that do not probe
    pay nothing.
    """
    if _STATE.tracer is not None:
        raise RuntimeError("capture_attention() is already active; captures do not nest")
    records: list[AttentionRecord] = []
    tracer = AttentionTracer(records)
    _STATE.tracer = tracer
    try:
        with tracer.module_hooks(), tracer:
            yield records
    except NotImplementedError as error:
        if "HigherOrderOperator" not in str(error):
            raise
        raise TrainstabError(
            f"{error}: a higher-order operator (flex_attention, torch.cond, ...) cannot run under trainstab's "
            "attention capture. For flex_attention, run the forward inside "
            "trainstab.train.flex_emulation.flex_attention_on_cpu(device), as trainstab's sweeps do; for anything "
            "else, "
            "call it only outside capture_attention() (trainstab.is_capturing() tells) and report its logits with "
            "trainstab.record_attention_logits"
        ) from None
    finally:
        _STATE.tracer = None


def is_capturing() -> bool:
    """True inside :func:`capture_attention` (lets hand-written models skip work)."""
    return _STATE.tracer is not None


def record_attention_logits(
    logits: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = True,
) -> None:
    """Report pre-softmax attention logits from an attention trainstab cannot see by itself.

    Call it from the model's forward with the scaled logits, shape
    (..., H, T_query, T_key), *before* masking and soft-capping. ``attn_mask``
    follows ``scaled_dot_product_attention``: a boolean mask (True = may
    attend) or an additive float mask. With ``is_causal`` (the default) SDPA's
    causal mask is applied too (query i sees keys 0..i). Outside a trainstab
    capture this does nothing; logits that the capture also sees reach a
    softmax are recorded once.
    """
    tracer = _STATE.tracer
    if tracer is None:
        return

    def record() -> AttentionRecord:
        with torch.no_grad():
            return sdpa_record(logits.detach(), attn_mask, is_causal)

    tracer.record_reported(logits, record)


@contextmanager
def unwatched() -> Iterator[None]:
    """Run the block's ops without the tracer following them: an emulation that adds its own record."""
    tracer = _STATE.tracer
    if tracer is None or tracer.paused:
        yield
        return
    tracer.paused = True
    try:
        yield
    finally:
        tracer.paused = False


@contextmanager
def outside_capture() -> Iterator[None]:
    """Run the block with the tracer off the dispatch-mode stack (flex itself, a higher-order operator, after its
    record was added by hand). Only when the tracer is the innermost mode; otherwise the block runs as it is."""
    tracer = _STATE.tracer
    if tracer is None or torch.utils._python_dispatch._get_current_dispatch_mode() is not tracer:
        yield
        return
    with torch.utils._python_dispatch._pop_mode_temporarily():
        yield


def add_record(record: AttentionRecord) -> None:
    """Append one attention call's record to the capture in progress (nothing outside a capture)."""
    if _STATE.tracer is not None:
        _STATE.tracer.records.append(record)


@contextmanager
def regroup_by_member(members: int) -> Iterator[None]:
    """Merge the records of ``members`` consecutive forwards into one per layer.

    For models run once per member: inside the block the records arrive as
    member 0's layers, then member 1's, ...; after it, there is one record per
    layer with the members' rows concatenated, (M*B, H), as for a stacked model.
    """
    records = _STATE.tracer.records if _STATE.tracer is not None else None
    start = len(records) if records is not None else 0
    yield
    if records is None or len(records) == start:
        return
    calls = records[start:]
    if len(calls) % members:
        raise RuntimeError(f"{len(calls)} attention calls for {members} members: the calls differ between members")
    layers = len(calls) // members
    merged = [
        AttentionRecord(
            torch.cat([calls[k * layers + layer].max_abs_logit for k in range(members)]),
            torch.cat([calls[k * layers + layer].entropy for k in range(members)]),
        )
        for layer in range(layers)
    ]
    del records[start:]
    records.extend(merged)
