"""The scaling checks' verdicts on hand-made ladders (the trained demonstrations are in stability_tests/)."""

import dataclasses
import math
from types import SimpleNamespace

from trainstab.config import ModelConfig, SweepConfig
from trainstab.ladder import LadderResult, Rung
from trainstab.results import RunResult, SweepResult
from trainstab.scaling import (
    PAIRED_CHECKS,
    SCALING_CHECKS,
    SWEEPS_READ,
    Evidence,
    ScalingConfig,
    ScalingThresholds,
    attention_advice,
    check_lr_transfer,
)

LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def _sweep(width: int, best: float) -> SweepResult:
    """A sweep whose final loss is a parabola in log10(LR) with its minimum at ``best``."""
    runs = tuple(
        RunResult(lr, 6.0, 3.0 + (math.log10(lr) - math.log10(best)) ** 2, 3.0, 1.0, 0.0, False, None, (6.0,), ())
        for lr in LRS
    )
    config = SweepConfig(model=dataclasses.replace(ModelConfig(), width=width, heads=width // 16), lrs=LRS)
    return SweepResult(config, runs, 0.1, best, {}, 0.0)


def _evidence(optima: tuple[float, ...]) -> SimpleNamespace:
    rungs = tuple(Rung(f"width={w}", 12 * w * w, _sweep(w, best)) for w, best in zip((32, 48, 64), optima, strict=True))
    return SimpleNamespace(width_ladder=LadderResult("width", rungs), base=SweepConfig(model_name="mypkg.m:build"))


def test_an_optimum_that_moves_one_way_with_width_is_a_drift():
    result = check_lr_transfer(_evidence((3e-2, 1.5e-2, 8e-3)), ScalingThresholds())
    assert not result.passed and "the optimal LR drifts with width" in result.message
    assert "consider µParam in your model" in result.message  # a user model: no --set advice


def test_an_optimum_that_jumps_back_and_forth_is_noise_not_a_drift():
    # The issue-13 user's qk-norm model: 0.0313, 0.0484, 0.001, once reported as -4.57 decades per decade.
    result = check_lr_transfer(_evidence((0.0313, 0.0484, 0.001)), ScalingThresholds())
    assert result.passed and abs(result.value) > 1
    assert "does not move one way with width" in result.message and "measures noise" in result.message


def test_an_optimum_that_stays_put_passes():
    assert check_lr_transfer(_evidence((1e-2, 1.05e-2, 1e-2)), ScalingThresholds()).passed


def test_attention_advice_fits_the_model():
    with_qk = attention_advice(SweepConfig())
    assert "has qk-layernorm already" in with_qk and "consider qk-layernorm" not in with_qk
    without = SweepConfig(model=dataclasses.replace(ModelConfig(), qk_layernorm=False))
    assert "consider qk-layernorm (--trainstab-set qk_layernorm=true)" in attention_advice(without)
    assert "consider qk-layernorm (--set qk_layernorm=true)" in attention_advice(without, "--")
    assert "if mypkg.m:build has no qk-layernorm, add it" in attention_advice(SweepConfig(model_name="mypkg.m:build"))


def test_every_scaling_check_says_which_ladders_it_reads():
    assert set(SWEEPS_READ) == set(SCALING_CHECKS) | set(PAIRED_CHECKS)
    evidence = Evidence(SweepConfig(), ScalingConfig(widths=(32, 48, 64), depths=(1, 2, 4)))
    assert [c.model.width for c in evidence.sweeps_read_by(["eps_forecast"])] == [32, 48, 64]
    both = evidence.sweeps_read_by(["sensitivity_scaling"])
    assert [(c.model.width, c.model.depth) for c in both] == [(32, 2), (48, 2), (64, 2), (32, 1), (32, 2), (32, 4)]
    assert evidence.sweeps_read_by(["log_z"]) == [SweepConfig()] and evidence.sweeps_read_by(["coordinates"]) == []
