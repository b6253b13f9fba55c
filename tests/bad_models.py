"""Model factories that break the model contract (issue 14) or crash while training, for tests/test_bad_input.py
and tests/test_exit_codes.py."""

import multiprocessing
import os
import signal
import sys

import torch
import torch.nn.functional as F
from torch import nn

from trainstab import record_attention_logits
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


# Models that pass the first step and break later, or whose first forward fails for a reason that is not their
# length: for tests/test_exit_codes.py. A crash during training is exit 3 (an error under pytest), never a failed
# check (1); a first step that fails is bad input (2), with a hint only where one applies.


class CrashesAtStep(Tiny):
    """Trains, then raises a RuntimeError from its forward on the given training step.

    A stack of ``members`` LRs calls the forward once per member per step: call ``step * members + member``
    is that member's forward at that step. Only training's forwards count (with gradients; the held-out
    evaluation runs without), and each built instance counts its own (the preflight builds another).
    """

    def __init__(self, size, step, members, member):
        super().__init__(size)
        self.crash_at, self.calls = step * members + member, 0

    def forward(self, idx):
        if torch.is_grad_enabled():
            if self.calls == self.crash_at:
                self.on_crash()
            self.calls += 1
        return super().forward(idx)

    def on_crash(self):
        raise RuntimeError(f"cache slot {self.calls} was never filled")


def crashes_at_step(size, step=40, members=1, member=0):
    return CrashesAtStep(size, step, members, member)


class ExitsAtStep(CrashesAtStep):
    def on_crash(self):
        sys.exit(7)


def exits_at_step(size, step=3):
    return ExitsAtStep(size, step, 1, 0)


class KilledAtStep(CrashesAtStep):
    """Its process is killed (SIGKILL, as the out-of-memory killer does) on the given step: only in a worker."""

    def on_crash(self):
        if multiprocessing.parent_process() is None:  # never the test process itself
            raise RuntimeError("killed_at_step trains in a worker process only (use --workers 2 and 2 stacks)")
        os.kill(os.getpid(), signal.SIGKILL)


def killed_at_step(size, step=3):
    return KilledAtStep(size, step, 1, 0)


class NanoGPT(nn.Module):
    """nanoGPT's model.py, condensed: ``forward(idx, targets=None)`` returns ``(logits, loss)``; without targets
    only the last position's logits (its inference path), so a wrapper passes targets to get them all, and the
    loss path calls ``.view`` on them, which needs contiguous ids."""

    def __init__(self, size):
        super().__init__()
        d, self.h = size.width, size.heads
        self.wte = nn.Embedding(size.vocab_size, d)
        self.wpe = nn.Embedding(size.context_length, d)
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, size.vocab_size, bias=False)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        x = self.wte(idx) + self.wpe(torch.arange(0, t, dtype=torch.long, device=idx.device))
        q, k, v = self.c_attn(self.ln_1(x)).split(x.size(-1), dim=2)
        q, k, v = (z.view(b, t, self.h, -1).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(b, t, -1)
        x = self.ln_f(x + self.c_proj(y))
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            logits, loss = self.lm_head(x[:, [-1], :]), None
        return logits, loss


class NanoGPTLogits(nn.Module):
    """The wrapper a user writes for the model contract: every position's logits, through the targets path."""

    def __init__(self, size):
        super().__init__()
        self.gpt = NanoGPT(size)

    def forward(self, idx):
        logits, _ = self.gpt(idx, targets=idx)
        return logits


def nanogpt(size):
    return NanoGPTLogits(size)


class MaskAssertion(Tiny):
    """Fails at every length on an assertion about its mask: no context-length hint applies."""

    def forward(self, idx):
        mask = torch.ones(idx.shape[1], idx.shape[1])
        assert mask.dtype == torch.bool, "the attention mask must be boolean"
        return super().forward(idx)


def mask_assertion(size):
    return MaskAssertion(size)


class NoCpuKernel(Tiny):
    def forward(self, idx):
        kernel = "aten::_flash_attention_forward"
        raise NotImplementedError(f"Could not run '{kernel}' with arguments from the 'CPU' backend")


def no_cpu_kernel(size):
    return NoCpuKernel(size)


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("FlexAttention does not support backward on CPU")


class NoBackward(Tiny):
    def forward(self, idx):
        return _NoBackward.apply(super().forward(idx))


def no_backward(size):
    return NoBackward(size)


class ScatteredAttention(Tiny):
    """Reports max attention logits of 5e3, 1e2, 5e3 at widths 32, 48, 64: near the forecast's 1e4 level, on no
    trend, so the forecast refuses to extrapolate (inconclusive, exit 4) whatever training does."""

    def forward(self, idx):
        b, t = idx.shape
        level = {32: 5e3, 48: 1e2}.get(self.head.in_features, 5e3)
        record_attention_logits(torch.full((b, self.h, t, t), level))
        return super().forward(idx)


def scattered_attention(size):
    return ScatteredAttention(size)
