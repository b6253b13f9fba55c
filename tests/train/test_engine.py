import math

import pytest
import torch
from torch import nn

from trainstab import TrainstabError, record_attention_logits
from trainstab.core.config import TrainConfig
from trainstab.train.corpus import load_corpus
from trainstab.train.engine import train_members

VOCAB, WIDTH, T = 512, 8, 16
TRAIN = TrainConfig(steps=6, batch_size=2, probe_every=3)


class StackedBigram(nn.Module):
    """M bigram models with an optional hand-written attention layer."""

    def __init__(self, members: int, attention: bool) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.embedding = nn.Parameter(torch.randn(1, VOCAB, WIDTH, generator=g).repeat(members, 1, 1))
        self.head = nn.Parameter(torch.randn(1, WIDTH, VOCAB, generator=g).repeat(members, 1, 1) * 0.1)
        self.attention = attention

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embedding[:, idx]  # (M, B, T, D)
        if self.attention:
            m, b, t, d = x.shape
            z = x @ x.transpose(-2, -1) / math.sqrt(d)  # (M, B, T, T), one head
            z = z.reshape(m * b, 1, t, t)
            record_attention_logits(z)  # the public hook, before masking
            causal = torch.ones(t, t, dtype=torch.bool).tril()
            weights = z.masked_fill(~causal, float("-inf")).softmax(-1).reshape(m, b, t, t)
            x = x + weights @ x
        return torch.einsum("mbtd,mdv->mbtv", x, self.head)


def _train(model: nn.Module, lrs: list[float]):
    corpus = load_corpus(None, context_length=T, vocab_size=VOCAB)
    params = {name: 1.0 for name, _ in model.named_parameters()}
    return train_members(model, params, lrs, corpus, TRAIN, context_length=T)


def test_a_model_whose_attention_cannot_be_observed_gets_an_error_naming_the_hook():
    with pytest.raises(TrainstabError, match="record_attention_logits"):
        _train(StackedBigram(members=2, attention=False), [1e-3, 1e-2])


def test_hand_written_attention_reported_through_the_hook_is_probed_per_member():
    runs = _train(StackedBigram(members=2, attention=True), [1e-3, 1e-1])
    for run in runs:
        assert len(run.losses) == TRAIN.steps
        assert [h["step"] for h in run.history] == [0, 3, 5]
        assert all(h["attn/max_logit/layer0"] > 0 for h in run.history)
    # Identical at init, so the first probe is the same; the high LR moves further.
    assert runs[0].history[0]["attn/max_logit"] == runs[1].history[0]["attn/max_logit"]
    assert runs[1].history[-1]["updates/rms"] > 0


def test_attention_is_traced_on_probe_steps_only(monkeypatch):
    from trainstab.train.attention_trace import AttentionTracer

    entered = []
    original = AttentionTracer.__enter__
    monkeypatch.setattr(AttentionTracer, "__enter__", lambda self: entered.append(1) or original(self))
    _train(StackedBigram(members=2, attention=True), [1e-3, 1e-2])
    assert len(entered) == 3  # steps 0, 3 and the last (5): the other three forwards run untraced
