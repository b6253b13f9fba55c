"""A model written with flex_attention, in a user's repository with none of our conftest, gates on the CPU:
without qk-norm it fails attention_logits, with qk-norm it passes (flex itself refuses to train on the CPU)."""

import re

import pytest

# The long tier (`pytest -m long`, after the README's command in .ci/run):
# pytest runs of a user's project, each training.
pytestmark = pytest.mark.long
pytest_plugins = ["pytester"]

pytest.importorskip("torch.nn.attention.flex_attention", reason="flex_attention needs torch >= 2.5")

# Written the way gpt-fast and torchtitan write attention: torch only, no trainstab import.
FLEX_MODELS = """
import torch
from torch import nn
from torch.nn.attention.flex_attention import create_block_mask, flex_attention


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


class Block(nn.Module):
    def __init__(self, d, heads, qk_norm):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.q_norm = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.norm1, self.norm2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, block_mask):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, self.head_dim).unbind(2)
        q, k, v = self.q_norm(q).transpose(1, 2), self.k_norm(k).transpose(1, 2), v.transpose(1, 2)
        y = flex_attention(q, k, v, block_mask=block_mask)
        x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class FlexGPT(nn.Module):
    def __init__(self, size, qk_norm=False):
        super().__init__()
        self.tokens = nn.Embedding(size.vocab_size, size.width)
        self.positions = nn.Embedding(size.context_length, size.width)
        self.blocks = nn.ModuleList(Block(size.width, size.heads, qk_norm) for _ in range(size.depth))
        self.norm = nn.RMSNorm(size.width)
        self.head = nn.Linear(size.width, size.vocab_size, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        mask = create_block_mask(causal, None, None, t, t, device="cpu")
        x = self.tokens(idx) + self.positions(torch.arange(t))
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))


def gpt(size):
    return FlexGPT(size)


def gpt_qk_norm(size):
    return FlexGPT(size, qk_norm=True)
"""

USER_TEST = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["flexmodels:gpt", "flexmodels:gpt_qk_norm"], checks=["attention_logits"])
def test_training_stability(model, check):
    check(model)
"""


def test_a_flex_attention_model_fails_attention_logits_without_qk_norm_and_passes_with_it(pytester):
    pytester.makepyfile(flexmodels=FLEX_MODELS, test_stability=USER_TEST)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--trainstab-steps=150", "--trainstab-lrs=1e-2,3e-1"
    )
    text = result.stdout.str()
    summary = {
        m.group(1): (float(m.group(2)), m.group(3))
        for m in re.finditer(r"^(\S+)\s+attention_logits\s+(\S+)\s+1000\s+-\s+(pass|FAIL)", text, flags=re.M)
    }
    assert summary["flexmodels:gpt"][1] == "FAIL", text
    assert summary["flexmodels:gpt_qk_norm"][1] == "pass", text
    assert summary["flexmodels:gpt_qk_norm"][0] < 100 < 1000 < summary["flexmodels:gpt"][0]
    result.assert_outcomes(passed=1, failed=1)
    assert "does not support backward on CPU" not in text
    assert "without torch.compile" not in text  # flex's eager advice: trainstab's doing, not the user's
