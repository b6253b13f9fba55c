"""Attention capture in a user's repository: the README's hook example as written, and models
built on nn.MultiheadAttention and hand-written attention that never call trainstab."""

import re

import pytest

from user_project import readme_block

pytest_plugins = ["pytester"]

# Written the way users write models: torch only, no trainstab import.
TORCH_MODELS = """
import math

import torch
from torch import nn


class MultiheadAttentionLM(nn.Module):
    def __init__(self, size):
        super().__init__()
        d = size.width
        self.embedding = nn.Embedding(size.vocab_size, d)
        self.norm = nn.LayerNorm(d)
        self.attention = nn.MultiheadAttention(d, size.heads, batch_first=True)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, size.vocab_size))

    def forward(self, idx):
        t = idx.shape[1]
        x = self.embedding(idx)
        h = self.norm(x)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        x = x + self.attention(h, h, h, attn_mask=mask)[0]
        return self.head(x)


class HandWrittenLM(MultiheadAttentionLM):
    def __init__(self, size):
        super().__init__(size)
        self.qkv = nn.Linear(size.width, 3 * size.width)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.embedding(idx)
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)  # one head
        att = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        att = att.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        return self.head(x + att @ v)


class NoAttentionLM(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.embedding = nn.Embedding(size.vocab_size, size.width)
        self.head = nn.Linear(size.width, size.vocab_size)

    def forward(self, idx):
        return self.head(self.embedding(idx))


def mha(size):
    return MultiheadAttentionLM(size)


def hand_written(size):
    return HandWrittenLM(size)


def no_attention(size):
    return NoAttentionLM(size)
"""

USER_TEST = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(
    ["mymodels:sigmoid_attention", "torchmodels:mha", "torchmodels:hand_written", "torchmodels:no_attention"],
    checks=["attention_logits"],
)
def test_training_stability(model, check):
    check(model)
"""


@pytest.fixture
def project(pytester):
    pytester.makepyfile(
        mymodels=readme_block("# mymodels.py: sigmoid attention"), torchmodels=TORCH_MODELS, test_stability=USER_TEST
    )
    pytester.syspathinsert()
    return pytester


def test_every_way_of_writing_attention_is_measured_and_a_blind_model_is_told_about_the_hook(project):
    # In a subprocess, as in a user's repository: an in-process run would restore sys.modules under transformers.
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "--trainstab-steps=150", "--trainstab-lrs=1e-2,3e-1"
    )
    outcomes = result.parseoutcomes()
    text = result.stdout.str()
    summary = {
        m.group(1): (float(m.group(2)), m.group(3))
        for m in re.finditer(r"^(\S+)\s+attention_logits\s+(\S+)\s+1000\s+-\s+(pass|FAIL)", text, flags=re.M)
    }
    # The README's hook example and both torch models are measured: a number, not an error.
    assert set(summary) == {"mymodels:sigmoid_attention", "torchmodels:mha", "torchmodels:hand_written"}, text
    assert summary["torchmodels:mha"][1] == "FAIL"  # no qk-norm: the logits grow past 1e3 at lr 0.3
    assert summary["torchmodels:hand_written"][1] == "FAIL"
    # The model with no attention errors with the hook named, before any training.
    assert "no attention logits were captured" in text
    assert "trainstab.record_attention_logits(logits)" in text
    assert outcomes["failed"] == 4 - sum(verdict == "pass" for _, verdict in summary.values())
