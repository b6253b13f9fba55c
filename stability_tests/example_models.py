"""Model factories of the kind a user points trainstab at: ``example_models:squared``.

Each factory takes a :class:`trainstab.models.ModelSize` and returns an
``nn.Module`` mapping token ids (B, T) to logits (B, T, V). These two have
known problems, so the battery must fail them (see test_battery.py).
"""

import torch
import torch.nn.functional as F
from torch import nn


class SquaredNoNorm(nn.Module):
    """No normalization anywhere and a squared MLP activation.

    Activations grow polynomially with the weights, so at high LR the loss
    spikes and then goes non-finite: the divergence the battery must catch.
    """

    def __init__(self, size):
        super().__init__()
        d, self.heads = size.width, size.heads
        self.embedding = nn.Embedding(size.vocab_size, d)
        self.qkv = nn.ModuleList(nn.Linear(d, 3 * d, bias=False) for _ in range(size.depth))
        self.mlp_in = nn.ModuleList(nn.Linear(d, 4 * d, bias=False) for _ in range(size.depth))
        self.mlp_out = nn.ModuleList(nn.Linear(4 * d, d, bias=False) for _ in range(size.depth))
        self.head = nn.Linear(d, size.vocab_size, bias=False)

    def forward(self, idx):
        b, t = idx.shape
        x = self.embedding(idx)  # (B, T, D)
        for qkv, mlp_in, mlp_out in zip(self.qkv, self.mlp_in, self.mlp_out, strict=True):
            q, k, v = (z.transpose(1, 2) for z in qkv(x).view(b, t, 3, self.heads, -1).unbind(2))  # (B, H, T, Dh)
            x = x + F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, -1)
            x = x + mlp_out(mlp_in(x) ** 2)
        return self.head(x)  # (B, T, V)


class DeadBranch(nn.Module):
    """A pre-LN transformer whose extra MLP branch is detached: it never learns."""

    def __init__(self, size):
        super().__init__()
        d, self.heads = size.width, size.heads
        self.embedding = nn.Embedding(size.vocab_size, d)
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.q_norm = nn.LayerNorm(d // size.heads)
        self.k_norm = nn.LayerNorm(d // size.heads)
        self.dead = nn.Linear(d, d, bias=False)
        self.final_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, size.vocab_size, bias=False)

    def forward(self, idx):
        b, t = idx.shape
        x = self.embedding(idx)
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, -1).unbind(2)
        q, k, v = self.q_norm(q).transpose(1, 2), self.k_norm(k).transpose(1, 2), v.transpose(1, 2)
        x = x + F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, -1)
        x = x + self.dead(x).detach()  # the bug: this branch gets no gradient
        return self.head(self.final_norm(x))


def squared(size):
    """The unstable no-norm, squared-activation model."""
    return SquaredNoNorm(size)


def dead_branch(size):
    """The model with a layer that never receives a gradient."""
    return DeadBranch(size)


def seeded_randn(*shape):
    """A helper some factories use (kept to show factories are plain Python)."""
    return torch.randn(*shape)


class ReturnsLogProbabilities(nn.Module):
    """A language model whose forward ends in ``log_softmax``, as PyTorch's word_language_model example does.

    Its outputs are log-probabilities: their log-sum-exp, log Z, is 0 whatever the weights, so the z-loss
    term c * (log Z)^2 is a constant and has no gradient. z-loss cannot act on it: z_loss_effect must fail it.
    """

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, idx):
        return F.log_softmax(self.inner(idx), dim=-1)


def log_softmax_output(size):
    """A stable pre-LN GPT with qk-norm (gpt_models.py) that returns log-probabilities."""
    from gpt_models import pre_ln_qk_norm  # stability_tests/ is on the path, as for every factory here

    return ReturnsLogProbabilities(pre_ln_qk_norm(size))
