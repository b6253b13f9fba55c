"""Causal LMs written the ways people write attention, as a user points trainstab at them.

None of them calls trainstab: their attention logits must be captured as
they are. ``attention_models:mha`` is built on ``nn.MultiheadAttention`` with
its defaults (``need_weights=True``), ``attention_models:decoder_layers`` on
``nn.TransformerDecoderLayer`` (self- and cross-attention),
``attention_models:encoder_layers`` on a causally masked
``nn.TransformerEncoder`` (post-LN, torch's default), and
``attention_models:mingpt`` is minGPT's hand-written attention, with
``mingpt_qk_norm`` its qk-layernorm variant. ``attention_models:flex_gpt`` calls
``flex_attention`` with a causal ``BlockMask``, grouped-query heads and ``scale``, as gpt-fast
and torchtitan write it (``flex_gpt_qk_norm``: RMSNorm on q and k). Each factory takes a
:class:`trainstab.models.ModelSize`; each model maps token ids (B, T) to
logits (B, T, V).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
from torch.utils.checkpoint import checkpoint


def _causal_mask(t: int) -> torch.Tensor:
    """(T, T) boolean, True above the diagonal: the positions a query may NOT attend."""
    return torch.ones(t, t, dtype=torch.bool).triu(1)


class MultiheadAttentionLM(nn.Module):
    """Pre-LN blocks around nn.MultiheadAttention called with its default arguments."""

    def __init__(self, size):
        super().__init__()
        d = size.width
        self.embedding = nn.Embedding(size.vocab_size, d)
        self.position = nn.Embedding(size.context_length, d)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(size.depth))
        self.attentions = nn.ModuleList(nn.MultiheadAttention(d, size.heads) for _ in range(size.depth))
        self.mlp_norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(size.depth))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)) for _ in range(size.depth)
        )
        self.final_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, size.vocab_size, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = (self.embedding(idx) + self.position(torch.arange(t))).transpose(0, 1)  # (T, B, D): batch_first=False
        mask = _causal_mask(t)
        for attn_norm, attention, mlp_norm, mlp in zip(
            self.attn_norms, self.attentions, self.mlp_norms, self.mlps, strict=True
        ):
            h = attn_norm(x)
            x = x + attention(h, h, h, attn_mask=mask)[0]  # need_weights=True: weights computed, then dropped
            x = x + mlp(mlp_norm(x))
        return self.head(self.final_norm(x)).transpose(0, 1)  # (B, T, V)


class DecoderLayersLM(nn.Module):
    """A stack of nn.TransformerDecoderLayer; the memory is the token embedding, causally masked."""

    def __init__(self, size):
        super().__init__()
        d = size.width
        self.embedding = nn.Embedding(size.vocab_size, d)
        self.position = nn.Parameter(torch.randn(size.context_length, d) * 0.02)
        layer = nn.TransformerDecoderLayer(d, size.heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, size.depth)
        self.final_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, size.vocab_size, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        memory = self.embedding(idx)  # (B, T, D)
        x = memory + self.position[:t]
        mask = nn.Transformer.generate_square_subsequent_mask(t)  # additive: -inf above the diagonal
        x = self.decoder(x, memory, tgt_mask=mask, memory_mask=mask, tgt_is_causal=True, memory_is_causal=True)
        return self.head(self.final_norm(x))


class EncoderLayersLM(nn.Module):
    """GPT as many write it from torch's parts: nn.TransformerEncoder with a causal mask, post-LN defaults."""

    def __init__(self, size):
        super().__init__()
        d = size.width
        self.embedding = nn.Embedding(size.vocab_size, d)
        self.position = nn.Embedding(size.context_length, d)
        layer = nn.TransformerEncoderLayer(d, size.heads, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, size.depth, enable_nested_tensor=False)
        self.head = nn.Linear(d, size.vocab_size, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.embedding(idx) + self.position(torch.arange(t))
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        return self.head(self.encoder(x, mask=mask, is_causal=True))


class MinGPTAttention(nn.Module):
    """minGPT's CausalSelfAttention: softmax(q kᵀ / sqrt(d_head)) with a tril buffer as the mask."""

    def __init__(self, size, qk_norm):
        super().__init__()
        d, self.heads = size.width, size.heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        t = size.context_length
        self.register_buffer("bias", torch.tril(torch.ones(t, t)).view(1, 1, t, t))
        self.q_norm = nn.LayerNorm(d // self.heads) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(d // self.heads) if qk_norm else nn.Identity()

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(c, dim=2)
        k = self.k_norm(k.view(b, t, self.heads, c // self.heads)).transpose(1, 2)  # (B, H, T, Dh)
        q = self.q_norm(q.view(b, t, self.heads, c // self.heads)).transpose(1, 2)
        v = v.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class MinGPT(nn.Module):
    """minGPT's GPT: learned positions, pre-LN blocks, GELU MLP."""

    def __init__(self, size, qk_norm=False):
        super().__init__()
        d = size.width
        self.wte = nn.Embedding(size.vocab_size, d)
        self.wpe = nn.Embedding(size.context_length, d)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                dict(
                    ln_1=nn.LayerNorm(d),
                    attn=MinGPTAttention(size, qk_norm),
                    ln_2=nn.LayerNorm(d),
                    mlp=nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)),
                )
            )
            for _ in range(size.depth)
        )
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, size.vocab_size, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t))
        for block in self.blocks:
            x = x + block["attn"](block["ln_1"](x))
            x = x + block["mlp"](block["ln_2"](x))
        return self.lm_head(self.ln_f(x))


class FlexAttentionBlock(nn.Module):
    """Pre-RMSNorm block whose attention is ``flex_attention`` with a causal BlockMask and GQA (2 query heads
    per key/value head when the head count allows it)."""

    def __init__(self, size, qk_norm):
        super().__init__()
        d, self.heads = size.width, size.heads
        self.kv_heads = self.heads // 2 if self.heads % 2 == 0 else self.heads
        self.head_dim = d // self.heads
        self.wq = nn.Linear(d, d, bias=False)
        self.wkv = nn.Linear(d, 2 * self.kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.q_norm = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.attn_norm, self.mlp_norm = nn.RMSNorm(d), nn.RMSNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d, bias=False), nn.SiLU(), nn.Linear(4 * d, d, bias=False))

    def forward(self, x, block_mask):
        b, t, d = x.shape
        h = self.attn_norm(x)
        q = self.q_norm(self.wq(h).view(b, t, self.heads, self.head_dim)).transpose(1, 2)  # (B, H, T, Dh)
        k, v = self.wkv(h).view(b, t, 2, self.kv_heads, self.head_dim).unbind(2)
        k, v = self.k_norm(k).transpose(1, 2), v.transpose(1, 2)  # (B, Hkv, T, Dh)
        y = flex_attention(
            q, k, v, block_mask=block_mask, enable_gqa=self.kv_heads != self.heads, scale=self.head_dim**-0.5
        )
        x = x + self.wo(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.mlp_norm(x))


class FlexGPT(nn.Module):
    """Learned positions, pre-RMSNorm blocks of flex attention, an untied head."""

    def __init__(self, size, qk_norm=False, checkpointed=False):
        super().__init__()
        self.checkpointed = checkpointed  # activation checkpointing: the backward runs each block again
        self.embedding = nn.Embedding(size.vocab_size, size.width)
        self.position = nn.Embedding(size.context_length, size.width)
        self.blocks = nn.ModuleList(FlexAttentionBlock(size, qk_norm) for _ in range(size.depth))
        self.norm = nn.RMSNorm(size.width)
        self.head = nn.Linear(size.width, size.vocab_size, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        block_mask = create_block_mask(_causal, None, None, t, t, device=str(idx.device))
        x = self.embedding(idx) + self.position(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = checkpoint(block, x, block_mask, use_reentrant=False) if self.checkpointed else block(x, block_mask)
        return self.head(self.norm(x))


def _causal(b, h, q_idx, kv_idx):
    """flex's mask_mod for causal attention: query q may attend keys up to itself."""
    return q_idx >= kv_idx


def mha(size):
    """nn.MultiheadAttention with its defaults; no qk-norm."""
    return MultiheadAttentionLM(size)


def decoder_layers(size):
    """nn.TransformerDecoderLayer stack; no qk-norm."""
    return DecoderLayersLM(size)


def encoder_layers(size):
    """A causally masked nn.TransformerEncoder; no qk-norm."""
    return EncoderLayersLM(size)


def mingpt(size):
    """minGPT's hand-written attention; no qk-norm."""
    return MinGPT(size)


def mingpt_qk_norm(size):
    """minGPT with a LayerNorm per head on q and k."""
    return MinGPT(size, qk_norm=True)


def flex_gpt(size):
    """flex_attention with a causal BlockMask and GQA; no qk-norm."""
    return FlexGPT(size)


def flex_gpt_qk_norm(size):
    """flex_attention with a causal BlockMask and GQA; RMSNorm on q and k."""
    return FlexGPT(size, qk_norm=True)


def flex_gpt_checkpointed(size):
    """flex_gpt with activation checkpointing: its backward calls flex_attention again."""
    return FlexGPT(size, checkpointed=True)
