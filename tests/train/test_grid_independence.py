"""An LR's numbers do not depend on the rest of its grid: trained beside others or alone, bit for bit.

Seed 0 everywhere. Each model trains LR 0.3 in three grids: alone, beside one other LR, and beside three
others of which one (1e12) diverges at step 1 and is dropped from the stack while the rest train on.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig
from trainstab.core.results import RunResult
from trainstab.train.models import build_stack
from trainstab.train.optim import gradient_norm
from trainstab.train.sweep import run_sweep
from user_models import Tiny

LR = 0.3
DIVERGING = 1e12  # its first step leaves every model below non-finite at step 1
GRIDS = ((LR,), (0.1, LR), (DIVERGING, 1e-3, LR, 1e-2))  # LR at slot 0, 1 and 2 (slot 1 once 1e12 is dropped)
TRAIN = TrainConfig(steps=8, batch_size=8, probe_every=3, seed=0)
SMALL = ModelConfig(width=32, depth=2, heads=2, context_length=32, vocab_size=512)


def _numbers(run: RunResult) -> list[object]:
    """Everything a run records, with NaN made comparable (NaN != NaN)."""

    def exact(value: object) -> object:
        return "nan" if isinstance(value, float) and math.isnan(value) else value

    fields = [run.initial_loss, run.final_loss, run.eval_loss, run.max_attention_logit, run.log_z_mean]
    fields += [run.diverged_at_step, *run.losses]
    fields += [sorted((key, exact(value)) for key, value in snapshot.items()) for snapshot in run.history]
    return [exact(value) for value in fields]


def _train_in_every_grid(model_name: str, model: ModelConfig = SMALL) -> list[RunResult]:
    """LR's run in each of GRIDS, trained in this process (one stack per grid)."""
    runs = []
    for grid in GRIDS:
        config = SweepConfig(model_name=model_name, model=model, train=TRAIN, lrs=grid, workers=1)
        sweep = run_sweep(config)
        if DIVERGING in grid:  # the grid that drops a member mid-run really does
            assert sweep.runs[grid.index(DIVERGING)].diverged
        runs.append(sweep.runs[grid.index(LR)])
    return runs


@pytest.mark.parametrize(
    ("model_name", "model"),
    [
        ("reference", ModelConfig(width=32, depth=2, heads=2, context_length=32, qk_layernorm=False)),
        ("user_models:unstable", SMALL),  # a user factory without qk-norm
        ("hf:llama", SMALL),
    ],
    ids=["reference", "user-factory", "hf-llama"],
)
def test_an_lr_trains_bit_for_bit_the_same_alone_beside_one_lr_and_beside_a_diverging_grid(model_name, model):
    alone, beside_one, beside_three = _train_in_every_grid(model_name, model)
    assert not alone.diverged and alone.max_attention_logit > 0
    maxima = [run.max_attention_logit for run in (alone, beside_one, beside_three)]
    print(f"{model_name}, seed {TRAIN.seed}, lr {LR}, max attention logit alone / beside one / beside three: {maxima}")
    assert _numbers(beside_one) == _numbers(alone)
    assert _numbers(beside_three) == _numbers(alone)


class NoisyTiny(Tiny):
    """A user model that draws random numbers (dropout) and keeps a statistic of its own in buffers."""

    def __init__(self, size):
        super().__init__(size, qk_norm=False)
        self.register_buffer("logit_scale", torch.ones(()))  # updated in place
        self.register_buffer("calls", torch.zeros(()))  # replaced by assignment

    def forward(self, idx):
        logits = F.dropout(super().forward(idx), p=0.1, training=self.training)
        # Scaled by the statistic of earlier calls: this call's own would let a position see later tokens.
        scaled = logits / self.logit_scale.clone() * (1.0 + 0.01 * self.calls.clamp(max=5))
        with torch.no_grad():
            self.logit_scale.lerp_(logits.abs().mean(), 0.5)
            self.calls = self.calls + 1
        return scaled


def noisy(size):
    return NoisyTiny(size)


def test_a_member_draws_the_random_numbers_and_keeps_the_buffers_it_would_alone():
    alone, beside_one, beside_three = _train_in_every_grid("test_grid_independence:noisy")
    assert not alone.diverged
    assert _numbers(beside_one) == _numbers(alone)
    assert _numbers(beside_three) == _numbers(alone)


@pytest.mark.parametrize("model_name", ["reference", "user_models:unstable"])
def test_a_members_gradient_norm_does_not_depend_on_how_many_members_share_its_stack(model_name):
    norms = []
    for members in (1, 2, 4, 7):
        model, _ = build_stack(model_name, SMALL, members, seed=0)
        scale = torch.arange(1, members + 1, dtype=torch.float32)  # members with other gradients than member 0's
        idx = torch.randint(0, SMALL.vocab_size, (2, SMALL.context_length), generator=torch.Generator().manual_seed(0))
        logits = model(idx)  # (M, B, T, V)
        (logits.square().mean((1, 2, 3)) * scale).sum().backward()
        norms.append(gradient_norm(dict(model.named_parameters()))[0].item())
    assert norms == [norms[0]] * len(norms)
