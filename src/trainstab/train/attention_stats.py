"""What one attention call records: max |logit| and entropy per batch row and head.

The logits are the pre-softmax attention logits z_ij = <q_i, k_j> * scale,
before masks, additive position biases and soft-capping (a capped model's
logits keep growing under the cap: those are the ones to watch). Masked
(query, key) pairs never count.

Shapes: logits and masks are (N, ..., Tq, Tk). A record is (N, H): N the
first (batch) dimension, H every dimension between it and (Tq, Tk), so
(B, H, T, T) gives (B, H) and grouped-query (B, H_kv, G, T, T) gives
(B, H_kv * G). 3-D logits (N*H, Tq, Tk), as nn.MultiheadAttention computes
them, are split into H heads when H is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: An additive mask entry at or below this removes the key. Masks come as -inf
#: (PyTorch), the dtype's most negative value (transformers), -1e9 or -1e4
#: (older code); position biases (ALiBi, T5) stay far above it at proxy lengths.
MASK_LIMIT = -1e4


@dataclass
class AttentionRecord:
    """Statistics of one attention call, per batch element and head."""

    max_abs_logit: torch.Tensor  # (N, H) max |z| over unmasked (query, key) pairs, fp32
    entropy: torch.Tensor  # (N, H) mean over queries of the attention entropy in nats, fp32


def allowed_by_additive_mask(mask: torch.Tensor) -> torch.Tensor:
    """Boolean (True = may attend) from an additive float mask."""
    return mask.float() > MASK_LIMIT


def sdpa_allowed(
    tq: int, tk: int, attn_mask: torch.Tensor | None, is_causal: bool, device: torch.device
) -> torch.Tensor | None:
    """The (…, Tq, Tk) pairs ``scaled_dot_product_attention`` lets attend, or None for all.

    ``attn_mask`` is boolean (True = may attend) or additive; ``is_causal`` is
    SDPA's upper-left aligned causal mask (query i sees keys 0..i).
    """
    allowed = None
    if is_causal:
        allowed = torch.ones(tq, tk, dtype=torch.bool, device=device).tril()
    if attn_mask is not None:
        from_mask = attn_mask if attn_mask.dtype == torch.bool else allowed_by_additive_mask(attn_mask)
        allowed = from_mask if allowed is None else allowed & from_mask
    return allowed


def sdpa_record(logits: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool) -> AttentionRecord:
    """The record of logits (..., H, Tq, Tk) masked the way ``scaled_dot_product_attention`` masks them."""
    logits = logits.float()
    allowed = sdpa_allowed(logits.shape[-2], logits.shape[-1], attn_mask, is_causal, logits.device)
    softmax_input = logits if attn_mask is None or attn_mask.dtype == torch.bool else logits + attn_mask.float()
    return attention_record(logits, allowed, softmax_input)


def attention_record(
    logits: torch.Tensor,
    allowed: torch.Tensor | None,
    softmax_input: torch.Tensor,
    heads: int | None = None,
) -> AttentionRecord:
    """The record of one attention call.

    ``logits`` (N, ..., Tq, Tk) are the pre-mask, pre-cap logits whose max |z|
    is recorded; ``allowed`` (broadcastable to them, or None) marks the pairs
    that count; ``softmax_input`` is what the softmax really saw (masks and
    caps included), whose entropy is recorded. ``heads`` splits 3-D logits
    (N*H, Tq, Tk) into heads.
    """
    logits = logits.float()
    if allowed is None:
        allowed = torch.ones((), dtype=torch.bool, device=logits.device)
    allowed = allowed.expand(logits.shape)
    max_abs = logits.abs().masked_fill(~allowed, 0.0).amax(dim=(-2, -1))  # (N, ...)
    log_p = torch.log_softmax(softmax_input.float().masked_fill(~allowed, -math.inf), dim=-1)
    # p * log p is 0 where p is 0 (masked keys or underflow), never NaN.
    entropy = -(log_p.exp() * log_p).nan_to_num(nan=0.0, neginf=0.0).sum(-1)  # (N, ..., Tq)
    # Rows with no allowed key (fully masked queries) carry no attention.
    has_key = allowed.any(-1)
    entropy = (entropy * has_key).sum(-1) / has_key.sum(-1).clamp(min=1)  # (N, ...)
    rows = logits.shape[0] if logits.dim() > 2 else 1
    if logits.dim() == 3 and heads is not None and rows % heads == 0:
        rows //= heads
    return AttentionRecord(max_abs.reshape(rows, -1), entropy.reshape(rows, -1))
