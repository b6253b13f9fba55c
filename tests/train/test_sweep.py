import dataclasses
import math

import pytest

from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig
from trainstab.core.results import RunResult, lr_sensitivity
from trainstab.train.sweep import run_sweep, stacks

TINY = SweepConfig(
    model=ModelConfig(width=16, heads=2, depth=1, context_length=16),
    train=TrainConfig(steps=12, batch_size=4, probe_every=4),
    lrs=(1e-3, 1e-2, 1e-1),
)


def _run(lr: float, final: float, initial: float = 5.0, diverged: bool = False) -> RunResult:
    return RunResult(
        lr=lr, initial_loss=initial, final_loss=final, eval_loss=final, max_attention_logit=1.0,
        log_z_mean=0.0, diverged=diverged, diverged_at_step=3 if diverged else None, losses=(), history=(),
    )  # fmt: skip


def test_lr_sensitivity_is_the_mean_gap_to_the_best_capped_loss():
    runs = [_run(1e-3, 4.0), _run(1e-2, 3.0), _run(1e-1, 3.5)]
    sensitivity, best = lr_sensitivity(runs)
    assert sensitivity == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert best == 1e-2


def test_diverged_and_worse_than_init_runs_count_as_the_initial_loss():
    runs = [_run(1e-2, 3.0), _run(1e-1, math.nan, diverged=True), _run(3e-1, 9.0)]
    sensitivity, _ = lr_sensitivity(runs)
    assert sensitivity == pytest.approx((0.0 + 2.0 + 2.0) / 3)


def test_a_model_at_chance_for_every_lr_scores_zero():
    runs = [_run(lr, 5.0) for lr in (1e-3, 1e-2, 1e-1)]
    assert lr_sensitivity(runs)[0] == 0.0


def test_stacks_cut_the_grid_in_order():
    assert stacks((1, 2, 3, 4, 5, 6, 7), stack_size=4) == [[1, 2, 3, 4], [5, 6, 7]]


def _metrics(result):
    return [(r.lr, r.losses, r.history, r.eval_loss, r.diverged) for r in result.runs], result.lr_sensitivity


def test_a_sweep_is_identical_on_rerun_and_for_any_worker_count():
    five = dataclasses.replace(TINY, lrs=(1e-3, 1e-2, 1e-1, 0.3, 1.0))  # two stacks
    one = run_sweep(dataclasses.replace(five, workers=1))
    again = run_sweep(dataclasses.replace(five, workers=1))
    two = run_sweep(dataclasses.replace(five, workers=2))
    assert _metrics(one) == _metrics(again)
    assert _metrics(one) == _metrics(two)


def test_a_run_that_goes_non_finite_is_recorded_as_diverged_and_the_others_go_on():
    config = dataclasses.replace(
        TINY, lrs=(1e-2, 1e30), train=dataclasses.replace(TINY.train, grad_clip=0.0, steps=20), workers=1
    )
    result = run_sweep(config)
    stable, exploded = result.runs
    assert exploded.diverged and exploded.diverged_at_step is not None
    assert math.isnan(exploded.final_loss)
    assert not stable.diverged and len(stable.losses) == 20
    assert result.best_lr == 1e-2


def test_every_run_reports_the_probes_as_flat_slash_keys():
    result = run_sweep(dataclasses.replace(TINY, workers=1))
    snapshot = result.runs[0].history[-1]
    for key in (
        "loss", "attn/max_logit", "attn/max_logit/layer0", "attn/max_logit/layer0/head1", "attn/entropy/layer0",
        "output/log_z/mean", "output/log_z/min", "output/log_z/max", "output/max_abs_logit",
        "grads/rms", "grads/norm", "updates/rms", "params/rms",
    ):  # fmt: skip
        assert key in snapshot and math.isfinite(snapshot[key]), key
    assert [h["step"] for h in result.runs[0].history] == [0, 4, 8, 11]


def test_dropping_a_diverged_member_leaves_the_survivors_numbers_unchanged():
    train = dataclasses.replace(TINY.train, grad_clip=0.0, steps=20)
    with_exploding = run_sweep(dataclasses.replace(TINY, lrs=(1e-2, 1e30), train=train, workers=1))
    alone = run_sweep(dataclasses.replace(TINY, lrs=(1e-2, 1e-2), train=train, workers=1))
    # Same stack size, so the survivor's arithmetic is the same until the drop; after it,
    # the survivor keeps training on its own and must not lose a step.
    assert with_exploding.runs[0].losses == pytest.approx(alone.runs[0].losses, abs=1e-4)


def test_pytest_xdist_workers_share_the_cores(monkeypatch):
    from trainstab.core import environment as sweep_module

    monkeypatch.setattr(sweep_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert sweep_module.available_cores() == 2
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "8")
    assert sweep_module.available_cores() == 1
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    assert sweep_module.available_cores() == 4
