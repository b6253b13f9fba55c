"""Model factories that break the model contract in the ways issue 14 found, for tests/test_bad_input.py."""

import sys

import torch
from torch import nn

from user_models import Tiny


def exits(size):
    sys.exit(3)


class IntegerLogits(Tiny):
    def forward(self, idx):
        return super().forward(idx).argmax(-1, keepdim=True).expand(-1, -1, self.head.out_features)


def integer_logits(size):
    return IntegerLogits(size)


def on_meta(size):
    with torch.device("meta"):
        return Tiny(size)


class NoGrad(Tiny):
    def forward(self, idx):
        with torch.no_grad():
            return super().forward(idx)


def no_grad(size):
    return NoGrad(size)


class NanLogits(Tiny):
    def forward(self, idx):
        return super().forward(idx) * float("nan")


def nan_logits(size):
    return NanLogits(size)


class ChangesGlobalState(Tiny):
    """A forward that leaves torch's process-wide settings changed (float64 default, gradients off)."""

    def forward(self, idx):
        out = super().forward(idx)
        torch.set_default_dtype(torch.float64)
        torch.set_num_threads(1)
        return out


def changes_global_state(size):
    return ChangesGlobalState(size)


class ExitsInForward(Tiny):
    def forward(self, idx):
        raise SystemExit(4)


def exits_in_forward(size):
    return ExitsInForward(size)


def plain(size):
    return nn.Sequential(nn.Embedding(size.vocab_size, size.width), nn.Linear(size.width, size.vocab_size))
