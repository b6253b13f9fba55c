"""A hand-written GPT with the switches users flip, as ``gpt_models:<variant>`` factories.

Written the way a model repository writes its own GPT: plain PyTorch modules,
``F.scaled_dot_product_attention``, no trainstab import. The variants cover
pre- and post-LN, LayerNorm and RMSNorm, GELU and SwiGLU MLPs, learned and
rotary positions, tied and untied embeddings, qk-norm on and off, and
PyTorch's default initialisation (``nn.Linear`` / ``nn.Embedding`` as
constructed) next to GPT-2's N(0, 0.02). Each factory takes a
:class:`trainstab.models.ModelSize`; each model maps (B, T) token ids to
(B, T, V) logits.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTOptions:
    """The switches of one variant."""

    norm: str = "layernorm"  # layernorm or rmsnorm
    placement: str = "pre"  # pre or post
    mlp: str = "gelu"  # gelu or swiglu
    positions: str = "learned"  # learned or rotary
    tied: bool = False  # share the embedding with the output head
    qk_norm: bool = False  # a norm per head on q and k
    init: str = "pytorch"  # pytorch (as constructed) or gpt2 (N(0, 0.02))


def _norm(kind, width):
    return nn.LayerNorm(width) if kind == "layernorm" else nn.RMSNorm(width)


def _rotate(x, positions):
    """Rotary position embedding of x (B, H, T, Dh) by its position (T,)."""
    half = x.shape[-1] // 2
    frequencies = 10000.0 ** (-torch.arange(half, dtype=torch.float32) / half)
    angles = positions[:, None].float() * frequencies[None, :]  # (T, Dh/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    """Causal self-attention and an MLP, each with a residual and a norm."""

    def __init__(self, size, options):
        super().__init__()
        d, self.heads, self.options = size.width, size.heads, options
        self.attn_norm, self.mlp_norm = _norm(options.norm, d), _norm(options.norm, d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        head_dim = d // size.heads
        self.q_norm = _norm(options.norm, head_dim) if options.qk_norm else nn.Identity()
        self.k_norm = _norm(options.norm, head_dim) if options.qk_norm else nn.Identity()
        hidden = 4 * d if options.mlp == "gelu" else 8 * d // 3
        self.up = nn.Linear(d, 2 * hidden if options.mlp == "swiglu" else hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def attention(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).unbind(2)  # (B, T, H, Dh) each
        q, k = self.q_norm(q).transpose(1, 2), self.k_norm(k).transpose(1, 2)  # (B, H, T, Dh)
        if self.options.positions == "rotary":
            positions = torch.arange(t)
            q, k = _rotate(q, positions), _rotate(k, positions)
        y = F.scaled_dot_product_attention(q, k, v.transpose(1, 2), is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))

    def mlp(self, x):
        if self.options.mlp == "swiglu":
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.down(F.silu(gate) * up)
        return self.down(F.gelu(self.up(x)))

    def forward(self, x):
        if self.options.placement == "pre":
            x = x + self.attention(self.attn_norm(x))
            return x + self.mlp(self.mlp_norm(x))
        x = self.attn_norm(x + self.attention(x))
        return self.mlp_norm(x + self.mlp(x))


class GPT(nn.Module):
    """Embedding, blocks, a final norm (pre-LN only) and the output head."""

    def __init__(self, size, options):
        super().__init__()
        d = size.width
        self.options = options
        self.embedding = nn.Embedding(size.vocab_size, d)
        self.position = nn.Embedding(size.context_length, d) if options.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(size, options) for _ in range(size.depth))
        self.final_norm = _norm(options.norm, d) if options.placement == "pre" else nn.Identity()
        self.head = nn.Linear(d, size.vocab_size, bias=False)
        if options.tied:
            self.head.weight = self.embedding.weight
        if options.init == "gpt2":
            for module in self.modules():
                if isinstance(module, nn.Linear | nn.Embedding):
                    nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx):
        x = self.embedding(idx)
        if self.position is not None:
            x = x + self.position(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))


def _factory(**switches):
    options = GPTOptions(**switches)

    def build(size):
        return GPT(size, options)

    build.__doc__ = f"GPT with {options}"
    return build


pre_ln = _factory()
pre_ln_qk_norm = _factory(qk_norm=True)
post_ln = _factory(placement="post")
llama_style = _factory(norm="rmsnorm", mlp="swiglu", positions="rotary")
llama_style_qk_norm = _factory(norm="rmsnorm", mlp="swiglu", positions="rotary", qk_norm=True)
tied_gpt2_init = _factory(tied=True, init="gpt2")
tied_gpt2_init_qk_norm = _factory(tied=True, init="gpt2", qk_norm=True)
