"""The reference model: the paper's decoder-only transformer, M copies at once.

Every parameter carries a leading "member" dimension M, so one forward pass
trains M independent models (one per learning rate of a sweep) with batched
matmuls instead of M Python loops; members never mix. On the CPU, on one
thread, each op computes a member's slice as it does with M = 1 (a matmul per
batch entry, norms per row, attention per (batch row, head)), so a member's
numbers are bit for bit those it has alone (``tests/train/test_grid_independence.py``
holds the sweep to that). With M = 1,
:class:`ReferenceLM` is an ordinary language model mapping (B, T) token ids to
(B, T, V) logits, which is what the model contract asks of user models.

Shapes: x_MxBxTxD is the residual stream, W_MxIxO a linear map applied as
x @ W. Attention runs as one SDPA call per layer on (M*B, H, T, Dh), so the
automatic capture sees it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainstab.core.config import ModelConfig


def _normal(shape: tuple[int, ...], std: float, truncated: bool, generator: torch.Generator) -> torch.Tensor:
    """Normal (optionally truncated at 2 std) init, drawn from ``generator``."""
    weight = torch.empty(shape)
    if truncated:
        nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std, generator=generator)
    else:
        nn.init.normal_(weight, mean=0.0, std=std, generator=generator)
    return weight


class _Init:
    """Draws every weight of one member from one generator, in a fixed order."""

    def __init__(self, config: ModelConfig, members: int, generator: torch.Generator) -> None:
        self.config = config
        self.members = members
        self.generator = generator

    def stack(self, weight: torch.Tensor) -> nn.Parameter:
        """Repeat one member's weight M times: every member starts identical."""
        return nn.Parameter(weight.unsqueeze(0).repeat(self.members, *([1] * weight.dim())))

    def linear(self, fan_in: int, fan_out: int, residual_out: bool = False) -> nn.Parameter:
        """A (M, fan_in, fan_out) weight initialized by the configured scheme."""
        c = self.config
        if c.init == "paper":  # truncated normal, std 1/sqrt(fan_in)
            std, truncated = 1.0 / math.sqrt(fan_in), True
        else:  # gpt2: N(0, 0.02), residual projections scaled by 1/sqrt(2 * depth)
            std, truncated = 0.02 / (math.sqrt(2 * c.depth) if residual_out else 1.0), False
        return self.stack(_normal((fan_in, fan_out), std * c.init_scale, truncated, self.generator))

    def embedding(self) -> nn.Parameter:
        """The (M, V, D) token embedding: paper N(0, 1/sqrt(d)), gpt2 N(0, 0.02)."""
        c = self.config
        std = 1.0 / math.sqrt(c.width) if c.init == "paper" else 0.02
        return self.stack(_normal((c.vocab_size, c.width), std, False, self.generator))

    def gain(self, size: int) -> nn.Parameter:
        """A (M, size) norm gain, initialized to one."""
        return self.stack(torch.ones(size))


def _norm(x: torch.Tensor, gain: torch.Tensor, kind: str) -> torch.Tensor:
    """LayerNorm (no bias) or RMSNorm over the last dim, with a per-member gain.

    x is (M, ..., C) and gain (M, C).
    """
    c = x.shape[-1]
    y = F.layer_norm(x, (c,)) if kind == "layernorm" else F.rms_norm(x, (c,))
    return y * gain.view(gain.shape[0], *([1] * (x.dim() - 2)), c)


def _linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x_Mx...xI @ W_MxIxO -> (M, ..., O) as one batched matmul."""
    m, i, o = weight.shape
    return torch.bmm(x.reshape(m, -1, i), weight).view(*x.shape[:-1], o)


def _softcapped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, cap: float) -> torch.Tensor:
    """Causal attention with Gemma 2's soft-cap on the logits: (M*B, H, T, Dh) each -> (M*B, H, T, Dh).

    Written out (SDPA has no soft-cap), in the form trainstab's capture reads: it records the logits
    before the cap, where their growth shows (the cap only hides it from the softmax).
    """
    t = q.shape[-2]
    logits = torch.matmul(q, k.transpose(-2, -1)) * scale  # (M*B, H, T, T)
    capped = cap * torch.tanh(logits / cap)
    future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    weights = torch.softmax(capped.masked_fill(future, float("-inf")), dim=-1)
    return torch.matmul(weights, v)


@torch.no_grad()
def _max_abs_causal_logit(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Max |attention logit| over the keys each query sees: (M*B, H, T, Dh) each -> (M*B, H)."""
    t = q.shape[-2]
    logits = torch.matmul(q, k.transpose(-2, -1)) * scale  # (M*B, H, T, T)
    future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    return logits.masked_fill(future, 0.0).abs().amax(dim=(-2, -1))


class Block(nn.Module):
    """One transformer block: attention then a GELU MLP, pre- or post-LN."""

    def __init__(self, config: ModelConfig, init: _Init) -> None:
        super().__init__()
        self.config = config
        d, dh = config.width, config.head_dim
        self.attn_norm = init.gain(d)
        self.qkv = init.linear(d, 3 * d)
        self.q_norm = init.gain(dh) if config.qk_layernorm else None
        self.k_norm = init.gain(dh) if config.qk_layernorm else None
        self.attn_out = init.linear(d, d, residual_out=True)
        self.mlp_norm = init.gain(d)
        self.mlp_in = init.linear(d, config.mlp_ratio * d)
        self.mlp_out = init.linear(config.mlp_ratio * d, d, residual_out=True)
        self.max_logit: torch.Tensor | None = None  # (M, H), the last forward's (only with qk_clip)

    @torch.no_grad()
    def clip_qk(self, tau: float, kept: torch.Tensor | None) -> None:
        """QK-clip: scale each head's W_q and W_k columns by sqrt(min(1, tau / max |logit|)) of the last forward.

        Both by the square root, so the head's logits scale by tau / max. ``kept``: the members still in the
        stack when some diverged since that forward.
        """
        if self.max_logit is None:
            return
        d, dh = self.config.width, self.config.head_dim
        peak = self.max_logit if kept is None else self.max_logit[kept]  # (M, H)
        factor = (tau / peak.clamp(min=tau)).sqrt().repeat_interleave(dh, dim=1)  # (M, D), 1 within tau
        self.qkv[:, :, :d] *= factor[:, None, :]  # W_q columns of each head
        self.qkv[:, :, d : 2 * d] *= factor[:, None, :]  # W_k columns

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Causal multi-head self-attention of x (M, B, T, D)."""
        c = self.config
        m, b, t, d = x.shape
        h, dh = c.heads, c.head_dim
        q, k, v = _linear(x, self.qkv).view(m, b, t, 3, h, dh).unbind(dim=3)  # each (M, B, T, H, Dh)
        if self.q_norm is not None and self.k_norm is not None:
            q = _norm(q, self.q_norm, "layernorm")  # per head, over Dh (paper: LayerNorm)
            k = _norm(k, self.k_norm, "layernorm")
        q, k, v = (z.reshape(m * b, t, h, dh).transpose(1, 2) for z in (q, k, v))  # (M*B, H, T, Dh)
        scale = 1.0 / math.sqrt(dh) if c.attention_scale == "inv_sqrt_d_head" else 1.0 / dh
        if c.qk_clip > 0:  # what QK-clip reads after the step: this forward's max |logit| per member and head
            self.max_logit = _max_abs_causal_logit(q, k, scale).view(m, b, h).amax(1)  # (M, H)
        if c.attention_softcap > 0:
            y = _softcapped_attention(q, k, v, scale, c.attention_softcap)
        else:
            # Looked up on the module at call time so that trainstab's capture sees the call.
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)  # (M*B, H, T, Dh)
        return _linear(y.transpose(1, 2).reshape(m, b, t, d), self.attn_out)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        """The 4d GELU MLP of x (M, B, T, D)."""
        return _linear(F.gelu(_linear(x, self.mlp_in)), self.mlp_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update of x (M, B, T, D)."""
        kind = self.config.norm
        if self.config.norm_placement == "pre":
            x = x + self.attention(_norm(x, self.attn_norm, kind))
            return x + self.mlp(_norm(x, self.mlp_norm, kind))
        x = _norm(x + self.attention(x), self.attn_norm, kind)
        return _norm(x + self.mlp(x), self.mlp_norm, kind)


class ReferenceTransformer(nn.Module):
    """M identical-at-init copies of the reference decoder-only transformer."""

    def __init__(self, config: ModelConfig, members: int = 1, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        init = _Init(config, members, torch.Generator().manual_seed(seed))
        self.embedding = init.embedding()
        self.blocks = nn.ModuleList(Block(config, init) for _ in range(config.depth))
        self.final_norm = init.gain(config.width) if config.norm_placement == "pre" else None
        self.unembedding = None if config.tie_embeddings else init.linear(config.width, config.vocab_size)

    def after_optimizer_step(self, kept: torch.Tensor | None) -> None:
        """QK-clip, when on: the engine calls it after every optimizer step (``kept``: see Block.clip_qk)."""
        if self.config.qk_clip > 0:
            for block in self.blocks:
                if isinstance(block, Block):
                    block.clip_qk(self.config.qk_clip, kept)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> logits (M, B, T, V), one slice per member."""
        x = self.embedding[:, idx]  # (M, B, T, D)
        for block in self.blocks:
            x = block(x)
        if self.final_norm is not None:
            x = _norm(x, self.final_norm, self.config.norm)
        head = self.unembedding if self.unembedding is not None else self.embedding.transpose(1, 2)
        logits = _linear(x, head)  # (M, B, T, V)
        cap = self.config.final_logit_softcap
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    def lr_multipliers(self) -> dict[str, float]:
        """Per-parameter LR multiplier: µParam (simple) scales hidden layers by base/width."""
        c = self.config
        hidden = c.mup_base_width / c.width if c.parameterization == "mup_simple" else 1.0
        return {
            name: hidden if name.rsplit(".", 1)[-1] in {"qkv", "attn_out", "mlp_in", "mlp_out"} else 1.0
            for name, _ in self.named_parameters()
        }


class ReferenceLM(nn.Module):
    """One reference model as a plain LM: (B, T) token ids -> (B, T, V) logits."""

    def __init__(self, config: ModelConfig, seed: int = 0) -> None:
        super().__init__()
        self.stack = ReferenceTransformer(config, members=1, seed=seed)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, V)."""
        logits: torch.Tensor = self.stack(idx)[0]
        return logits
