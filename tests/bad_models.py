"""Model factories that break the model contract (issue 14) or crash while training, for
tests/end_to_end/test_bad_input.py and tests/end_to_end/test_exit_codes.py."""

import multiprocessing
import os
import signal
import sys
import time

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
# length: for tests/end_to_end/test_exit_codes.py. A crash during training is exit 3 (an error under pytest),
# never a failed check (1); a first step that fails is bad input (2), with a hint only where one applies.


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


def nanogpt_as_is(size):
    """nanoGPT called as it is: (logits, loss), the logits of the last position only."""
    return NanoGPT(size)


class NanoGPTLastPosition(NanoGPT):
    """A wrapper that keeps the tuple's logits but calls the inference path: (B, 1, V)."""

    def forward(self, idx):
        return super().forward(idx)[0]


def nanogpt_last_position(size):
    return NanoGPTLastPosition(size)


class NanoGPTRecipe(nn.Module):
    """The recipe's wrapper (recipes/nanogpt_models.py) around the condensed nanoGPT."""

    def __init__(self, size):
        super().__init__()
        self.gpt = NanoGPT(size)

    def forward(self, idx):
        logits, _ = self.gpt(idx, targets=idx.contiguous())
        return logits


def nanogpt_recipe(size):
    return NanoGPTRecipe(size)


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


# Models whose steps take long: for tests/train/test_slow_models.py (a line for a quiet step, the time limit's exit 4).


class SlowSteps(Tiny):
    """Sleeps ``seconds`` in each training forward numbered ``first`` to ``last`` (counted from 0; the held-out
    evaluation, without gradients, never sleeps). A stack of one LR calls the forward once per step, so these
    are its steps. Each instance adds its process id to the file $TRAINSTAB_TEST_PIDS, when set, so a test can
    tell that no worker outlives the run."""

    def __init__(self, size, seconds, first, last):
        super().__init__(size)
        self.seconds, self.first, self.last, self.calls = seconds, first, last, 0
        if os.environ.get("TRAINSTAB_TEST_PIDS"):
            with open(os.environ["TRAINSTAB_TEST_PIDS"], "a") as pids:
                pids.write(f"{os.getpid()}\n")

    def forward(self, idx):
        if torch.is_grad_enabled():
            if self.first <= self.calls <= self.last:
                time.sleep(self.seconds)
            self.calls += 1
        return super().forward(idx)


def slow_steps(size, seconds=1.0, first=0, last=1_000_000):
    return SlowSteps(size, seconds, first, last)


# Models whose logits at a position see later tokens (issue 27): refused before training, naming the first
# position that leaks, for tests/train/test_causal_models.py.


class Masked(Tiny):
    """Tiny with the attention mask of ``mask(t)``: (T, T) booleans, True where query i may see key j."""

    def mask(self, t):
        return torch.ones(t, t, dtype=torch.bool).tril()

    def forward(self, idx):
        b, t = idx.shape
        x = self.emb(idx) + self.pos[:t]
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["ln1"](x)).view(b, t, 3, self.h, -1).unbind(2)
            q, k = F.layer_norm(q, q.shape[-1:]), F.layer_norm(k, k.shape[-1:])
            mask = self.mask(t)
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)
            x = x + self.dropout(blk["o"](y.transpose(1, 2).reshape(b, t, -1)))
            x = x + blk["pr"](F.gelu(blk["fc"](blk["ln2"](x))))
        return self.head(self.lnf(x))

    def dropout(self, x):
        return x


class Bidirectional(Masked):
    """An encoder: every position sees every token."""

    def mask(self, t):
        return torch.ones(t, t, dtype=torch.bool)


def bidirectional(size):
    return Bidirectional(size)


class SeesNextToken(Masked):
    """A mask off by one: position i sees token i + 1 too."""

    def mask(self, t):
        return torch.ones(t, t, dtype=torch.bool).tril(diagonal=1)


def sees_next_token(size):
    return SeesNextToken(size)


class BidirectionalWhenTraining(Masked):
    """Causal in eval mode, bidirectional in training mode (a mask built only on the inference path)."""

    def mask(self, t):
        return torch.ones(t, t, dtype=torch.bool) if self.training else super().mask(t)


def bidirectional_when_training(size):
    return BidirectionalWhenTraining(size)


class CausalWithDropout(Masked):
    """Causal, with dropout on each attention output in training mode: its random masks must not read as a leak."""

    def dropout(self, x):
        return F.dropout(x, p=0.1, training=self.training)


def causal_with_dropout(size):
    return CausalWithDropout(size)


# Parameters that are not float32 (issue 27): refused in one line before training, not a traceback in the optimizer.


def bf16_parameters(size):
    return Tiny(size).to(torch.bfloat16)


def fp16_parameters(size):
    return Tiny(size).to(torch.float16)


def float64_parameters(size):
    return Tiny(size).to(torch.float64)


def one_bf16_layer(size):
    model = Tiny(size)
    model.head.to(torch.bfloat16)
    return model


# Leaks the causality check must see through (review of issue 27): a zero-initialised layer (modded-nanogpt
# zero-inits its head and attention output projections) makes every path through it exactly 0 at
# initialisation, and a constant logit offset must not widen the rounding tolerance.


def bidirectional_zero_head(size):
    model = Bidirectional(size)
    nn.init.zeros_(model.head.weight)  # every logit is exactly 0 at initialisation
    return model


def bidirectional_zero_attention_output(size):
    model = Bidirectional(size)
    for blk in model.blocks:
        nn.init.zeros_(blk["o"].weight)  # attention adds nothing to the residual stream at initialisation
    return model


class OffsetSmallLeak(Masked):
    """Causal attention, but the logits see 1% of the next token's embedding, all shifted by +1e4."""

    def forward(self, idx):
        leak = 0.01 * self.head(self.emb(idx.roll(-1, dims=1)))  # (B, T, V): position i sees token i + 1
        return super().forward(idx) + leak + 1e4


def offset_small_leak(size):
    return OffsetSmallLeak(size)


# Forwards the causality check runs as training does, or refuses in one line.


class FixedBatchSize(Tiny):
    """Reshapes to the training batch size written into its code (16, TrainConfig.batch_size)."""

    def forward(self, idx):
        return super().forward(idx.reshape(16, -1))


def fixed_batch_size(size):
    return FixedBatchSize(size)


class FailsWithoutGradients(Tiny):
    """Trains, but its forward raises when gradients are off (an assertion meant for training)."""

    def forward(self, idx):
        if not torch.is_grad_enabled():
            raise RuntimeError("this model only runs with gradients")
        return super().forward(idx)


def fails_without_gradients(size):
    return FailsWithoutGradients(size)


class ExitsWithoutGradients(Tiny):
    def forward(self, idx):
        if not torch.is_grad_enabled():
            sys.exit(3)
        return super().forward(idx)


def exits_without_gradients(size):
    return ExitsWithoutGradients(size)


# A worker that only SIGKILL ends (issue 27, item 5): for tests/train/test_slow_models.py, the time limit's stop.


class IgnoresSigterm(SlowSteps):
    """SlowSteps whose instances in a worker process ignore SIGTERM, as a model with its own handler (or one
    stuck in native code) does. The run's own process (its preflight builds the model too) keeps SIGTERM. The
    process id is recorded ($TRAINSTAB_TEST_PIDS) after SIGTERM is ignored."""

    def __init__(self, size, seconds, first, last):
        if multiprocessing.current_process().name != "MainProcess":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        super().__init__(size, seconds, first, last)


def ignores_sigterm(size, seconds=1.0, first=0, last=1_000_000):
    return IgnoresSigterm(size, seconds, first, last)


def ignore_sigterm_and_sleep(ready):
    """A pool task that ignores SIGTERM, creates the file ``ready`` to say so, then sleeps for ten minutes."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(ready, "w").close()
    time.sleep(600)


class LayerScale(nn.Module):
    """A learned per-channel scale on a residual branch (CaiT's LayerScale), started small."""

    def __init__(self, width, scale):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((width,), scale))

    def forward(self, x):
        return x * self.gamma


def bidirectional_layer_scale(size, scale=1e-5):
    """An encoder whose attention branch starts scaled by ``scale``: its leak moves the logits by ~scale x 3e-2."""
    model = Bidirectional(size)
    for blk in model.blocks:
        blk["o"] = nn.Sequential(blk["o"], LayerScale(size.width, scale))
    return model
