"""Attention-logit capture: automatic for SDPA, a public hook for the rest.

Inside :func:`capture_attention`, every call of
``torch.nn.functional.scaled_dot_product_attention`` is passed through to the
original kernel unchanged (so the model's numerics are untouched) and, beside
it, the pre-softmax logits z_ij = <q_i, k_j> * scale are recomputed in fp32
without gradient to record, per batch element and head, the max |z| over the
unmasked positions and the attention entropy. A model that computes attention
by hand calls :func:`record_attention_logits` with its logits instead; outside
a capture that call costs one attribute check and does nothing.

Each call is one "layer", in call order. Shapes: q, k are (..., H, T, Dh);
records are (N, H) with N the product of the leading batch dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_ORIGINAL_SDPA = F.scaled_dot_product_attention


@dataclass
class AttentionRecord:
    """Statistics of one attention call, per batch element and head."""

    max_abs_logit: torch.Tensor  # (N, H) max |z| over unmasked (query, key) pairs, fp32
    entropy: torch.Tensor  # (N, H) mean over queries of the attention entropy in nats, fp32


class _CaptureState:
    """The records of the capture in progress; ``None`` when none is active."""

    records: list[AttentionRecord] | None = None


_STATE = _CaptureState()


@contextmanager
def capture_attention() -> Iterator[list[AttentionRecord]]:
    """Record attention statistics of every attention call made inside the block.

    Yields the list the records are appended to, one per call in call order.
    """
    if _STATE.records is not None:
        raise RuntimeError("capture_attention() is already active; captures do not nest")
    records: list[AttentionRecord] = []
    _STATE.records = records
    F.scaled_dot_product_attention = _capturing_sdpa
    try:
        yield records
    finally:
        F.scaled_dot_product_attention = _ORIGINAL_SDPA
        _STATE.records = None


def is_capturing() -> bool:
    """True inside :func:`capture_attention` (lets hand-written models skip work)."""
    return _STATE.records is not None


def record_attention_logits(
    logits: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = True,
) -> None:
    """Report pre-softmax attention logits from a hand-written attention.

    Call it from the model's forward with the scaled logits, shape
    (..., H, T_query, T_key), *before* masking. ``attn_mask`` follows
    ``scaled_dot_product_attention``: a boolean mask (True = may attend) or an
    additive float mask. With ``is_causal`` (the default) the causal mask is
    applied too. Outside a trainstab capture this does nothing.
    """
    records = _STATE.records
    if records is None:
        return
    with torch.no_grad():
        records.append(_statistics(logits.detach().float(), attn_mask, is_causal))


@contextmanager
def regroup_by_member(members: int) -> Iterator[None]:
    """Merge the records of ``members`` consecutive forwards into one per layer.

    For models run once per member: inside the block the records arrive as
    member 0's layers, then member 1's, ...; after it, there is one record per
    layer with the members' rows concatenated, (M*B, H), as for a stacked model.
    """
    records = _STATE.records
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


def _capturing_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """Drop-in SDPA that records statistics beside the unchanged original call."""
    out = _ORIGINAL_SDPA(
        query,
        key,
        value,
        attn_mask=attn_mask,
        dropout_p=dropout_p,
        is_causal=is_causal,
        scale=scale,
        enable_gqa=enable_gqa,
    )
    records = _STATE.records
    if records is not None:
        with torch.no_grad():
            q = query.detach().float()
            k = key.detach().float()
            if k.shape[-3] != q.shape[-3]:  # grouped-query attention: share each k head
                k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
            s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
            logits = (q @ k.transpose(-2, -1)) * s  # (..., H, Tq, Tk)
            records.append(_statistics(logits, attn_mask, is_causal))
    return out


def _statistics(logits: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool) -> AttentionRecord:
    """Max |z| and entropy per (batch, head) of logits (..., H, Tq, Tk)."""
    tq, tk = logits.shape[-2], logits.shape[-1]
    allowed = torch.ones(tq, tk, dtype=torch.bool, device=logits.device)
    if is_causal:  # queries are the last tq positions of the keys (SDPA's convention)
        allowed = torch.ones(tq, tk, dtype=torch.bool, device=logits.device).tril(diagonal=tk - tq)
    additive = torch.zeros((), device=logits.device)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = allowed & attn_mask
        else:
            additive = attn_mask.float()
            allowed = allowed & torch.isfinite(additive)
    masked = (logits + additive).masked_fill(~allowed, float("-inf"))
    max_abs = logits.abs().masked_fill(~allowed, 0.0).amax(dim=(-2, -1))  # (..., H)
    log_p = torch.log_softmax(masked, dim=-1)
    p = log_p.exp()
    # p * log p is 0 where p is 0 (masked keys or underflow), never NaN.
    entropy = -(p * log_p).nan_to_num(nan=0.0, neginf=0.0).sum(-1)  # (..., H, Tq)
    # Rows with no allowed key (fully masked queries) carry no attention.
    has_key = allowed.expand_as(masked).any(-1)
    entropy = (entropy * has_key).sum(-1) / has_key.sum(-1).clamp(min=1)  # (..., H)
    heads = logits.shape[-3]
    return AttentionRecord(max_abs.reshape(-1, heads), entropy.reshape(-1, heads))
