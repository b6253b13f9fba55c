"""Model factories a user might write, for the model-contract tests."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Tiny(nn.Module):
    def __init__(self, size, qk_norm=True):
        super().__init__()
        d, self.h = size.width, size.heads
        self.emb = nn.Embedding(size.vocab_size, d)
        self.pos = nn.Parameter(torch.zeros(size.context_length, d))
        self.blocks = nn.ModuleList()
        for _ in range(size.depth):
            self.blocks.append(
                nn.ModuleDict(
                    dict(
                        ln1=nn.LayerNorm(d),
                        qkv=nn.Linear(d, 3 * d, bias=False),
                        o=nn.Linear(d, d, bias=False),
                        ln2=nn.LayerNorm(d),
                        fc=nn.Linear(d, 4 * d),
                        pr=nn.Linear(4 * d, d),
                    )
                )
            )
        self.qk_norm = qk_norm
        self.lnf = nn.LayerNorm(d)
        self.head = nn.Linear(d, size.vocab_size, bias=False)

    def forward(self, idx):
        b, t = idx.shape
        x = self.emb(idx) + self.pos[:t]
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["ln1"](x)).view(b, t, 3, self.h, -1).unbind(2)
            if self.qk_norm:
                q, k = F.layer_norm(q, q.shape[-1:]), F.layer_norm(k, k.shape[-1:])
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
            x = x + blk["o"](y.transpose(1, 2).reshape(b, t, -1))
            x = x + blk["pr"](F.gelu(blk["fc"](blk["ln2"](x))))
        return self.head(self.lnf(x))


def stable(size):
    return Tiny(size, qk_norm=True)


def unstable(size):
    return Tiny(size, qk_norm=False)


class NoAttention(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.emb = nn.Embedding(size.vocab_size, size.width)
        self.head = nn.Linear(size.width, size.vocab_size)

    def forward(self, idx):
        return self.head(self.emb(idx))


def no_attention(size):
    return NoAttention(size)


def raises(size):
    raise ValueError("width must be a power of two")


def wrong_vocab(size):
    return Tiny(type(size)(size.width, size.depth, size.heads, size.vocab_size + 1, size.context_length))


def returns_a_string(size):
    return "not a model"


class ShortContext(nn.Module):
    """A model with a hard-coded block_size of 8, shorter than the sweep's context."""

    def __init__(self, size):
        super().__init__()
        self.inner = Tiny(size)
        self.position = nn.Embedding(8, size.width)

    def forward(self, idx):
        positions = self.position(torch.arange(idx.shape[1]))  # IndexError past 8 tokens
        return self.inner(idx) + positions.sum() * 0


def short_context(size):
    return ShortContext(size)


class WithKeyBias(nn.Module):
    """One attention block whose keys are layer-normalised with a bias: a parameter softmax cancels."""

    def __init__(self, size):
        super().__init__()
        d, self.h = size.width, size.heads
        self.emb = nn.Embedding(size.vocab_size, d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.k_norm = nn.LayerNorm(d // size.heads)  # weight and bias
        self.head = nn.Linear(d, size.vocab_size, bias=False)

    def forward(self, idx):
        b, t = idx.shape
        x = self.emb(idx)
        q, k, v = self.qkv(x).view(b, t, 3, self.h, -1).unbind(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), self.k_norm(k).transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        return self.head(x + y.transpose(1, 2).reshape(b, t, -1))


def with_key_bias(size):
    return WithKeyBias(size)


def fails_in_a_task():
    """A function a Ray task runs, failing the way trainstab's own checks fail (tests/train/test_ray_executor.py)."""
    from trainstab.core.errors import TrainstabError

    raise TrainstabError("model 'x' failed on a batch: fix its forward\n(second line of the message)")


def build(size, qk_norm=True):
    """The factory with a keyword option, as users write one: ``user_models:build[qk_norm=false]``."""
    return Tiny(size, qk_norm=qk_norm)


def with_note(size, note=""):
    """A factory with a free-text option: a label as long as a user makes it (tests/cli/test_what_the_cli_prints.py)."""
    del note  # only the label carries it
    return Tiny(size)
