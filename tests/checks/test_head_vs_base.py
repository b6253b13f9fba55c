"""The paired comparison of a change with its base, on sweeps written by hand: what is worse, what is noise."""

import dataclasses
import math

import pytest

from trainstab.checks.battery import BATTERY, Thresholds
from trainstab.checks.head_vs_base import (
    PairedRule,
    compare,
    difference,
    paired_statistic,
    seed_configs,
    seed_count,
)
from trainstab.core.config import SweepConfig, TrainConfig
from trainstab.core.results import RunResult, SweepResult

LRS = (0.01, 0.1, 0.3)
RULE = PairedRule()


def _sweep(seed: int, logits: tuple[float, ...], sensitivity: float = 0.3, diverged_at: float | None = None):
    runs = tuple(
        RunResult(
            lr=lr, initial_loss=5.0, final_loss=math.nan if lr == diverged_at else 3.0, eval_loss=math.nan,
            max_attention_logit=math.nan if lr == diverged_at else logit, log_z_mean=5.0, diverged=lr == diverged_at,
            diverged_at_step=5 if lr == diverged_at else None, losses=(5.0, 3.0),
            history=({"step": 0.0, "attn/max_logit": logit, "logz/mean": 5.0, "logz/max_abs": 5.5},),
        )
        for lr, logit in zip(LRS, logits, strict=True)
    )  # fmt: skip
    config = SweepConfig(lrs=LRS, train=TrainConfig(seed=seed))
    return SweepResult(config, runs, sensitivity, 0.1, {}, 0.0)


def _side(per_seed_logits, sensitivities=(0.3, 0.3, 0.3), diverged_at=None):
    return [
        _sweep(seed, logits, sensitivity, diverged_at)
        for seed, (logits, sensitivity) in enumerate(zip(per_seed_logits, sensitivities, strict=True))
    ]


BASE = _side([(10.0, 30.0, 40.0), (12.0, 25.0, 50.0), (11.0, 35.0, 45.0)])


def test_an_identical_head_is_within_with_a_difference_of_zero_everywhere():
    result = compare(BATTERY["attention_logits"], BASE, BASE, Thresholds(), RULE, "main (abc)")
    assert result.status == "within"
    assert [d.difference for d in result.differences] == [0.0, 0.0, 0.0]
    assert "within the noise of main (abc) (seeds 0,1,2)" in result.message()


def test_removing_qk_norm_is_worse_at_the_high_lrs_and_the_message_names_them():
    head = _side([(11.0, 900.0, 3e4), (10.0, 1500.0, 8e4), (12.0, 700.0, 5e4)])
    result = compare(BATTERY["attention_logits"], BASE, head, Thresholds(), RULE, "main (abc)")
    assert result.status == "worse"
    worse = {d.lr for d in result.differences if d.worse}
    assert worse == {0.1, 0.3}
    assert "max_attention_logit at lr=0.3: base 45, head 5.333e+04" in result.message()
    assert "dex" in result.message()


def test_a_head_that_moves_within_the_seed_spread_is_not_worse():
    # Each LR's head mean is above the base's, but by less than the larger side's spread (in log10).
    head = _side([(12.0, 36.0, 52.0), (13.0, 30.0, 60.0), (11.5, 40.0, 48.0)])
    result = compare(BATTERY["attention_logits"], BASE, head, Thresholds(), RULE, "main")
    assert result.status == "within"
    assert all(d.difference > 0 for d in result.differences)


def test_the_band_grows_with_the_spread_factor_and_the_kernel_tolerance_is_its_floor():
    head = _side([(10.0, 30.0, 40.0)] * 3)  # no spread on the head's side
    flat = _side([(10.0, 30.0, 40.0)] * 3)
    (tight,) = [d for d in compare(BATTERY["attention_logits"], flat, head, Thresholds(), RULE, "m").differences][:1]
    # No spread: the band is the tolerance of a kernel change alone, log10((10 + 5 + 0.5 * 10) / 10).
    assert tight.band == pytest.approx(math.log10(2.0))
    wide = compare(BATTERY["attention_logits"], BASE, head, Thresholds(), PairedRule(spread_factor=2.0), "m")
    narrow = compare(BATTERY["attention_logits"], BASE, head, Thresholds(), PairedRule(spread_factor=1.0), "m")
    assert all(w.band > n.band for w, n in zip(wide.differences, narrow.differences, strict=True))


def test_lr_sensitivity_is_compared_once_per_sweep_as_the_paper_does():
    head = _side([(10.0, 30.0, 40.0)] * 3, sensitivities=(0.62, 0.60, 0.65))
    base = _side([(10.0, 30.0, 40.0)] * 3, sensitivities=(0.30, 0.33, 0.31))
    result = compare(BATTERY["lr_sensitivity"], base, head, Thresholds(), RULE, "main")
    (only,) = result.differences
    assert only.lr is None and only.statistic == "lr_sensitivity"
    assert only.difference == pytest.approx(0.31, abs=1e-9)
    assert result.status == "worse"
    better = compare(BATTERY["lr_sensitivity"], head, base, Thresholds(), RULE, "main")
    assert better.status == "within" and better.differences[0].difference < 0  # lower sensitivity is better


def test_a_head_that_diverges_where_the_base_did_not_is_worse_on_no_divergence():
    head = _side([(10.0, 30.0, 40.0)] * 3, diverged_at=0.3)
    result = compare(BATTERY["no_divergence"], BASE, head, Thresholds(), RULE, "main")
    assert result.status == "worse"
    assert [d.lr for d in result.differences if d.worse] == [0.3]
    # ...while its attention logits at that LR, which has no number, are left out.
    logits = compare(BATTERY["attention_logits"], BASE, head, Thresholds(), RULE, "main")
    assert math.isnan(next(d for d in logits.differences if d.lr == 0.3).difference)


def test_one_head_seed_in_three_diverging_where_no_base_seed_did_is_worse_and_equal_counts_are_not():
    # The absolute no_divergence check reads the run's seed only; the pair reads all three.
    stable = [_sweep(seed, (10.0, 30.0, 40.0)) for seed in range(3)]
    once = [*stable[:2], _sweep(2, (10.0, 30.0, 40.0), diverged_at=0.3)]
    result = compare(BATTERY["no_divergence"], stable, once, Thresholds(), RULE, "main")
    assert result.status == "worse"
    assert next(d for d in result.differences if d.lr == 0.3).difference == pytest.approx(1 / 3)
    also_once = [_sweep(0, (10.0, 30.0, 40.0), diverged_at=0.3), *stable[1:]]
    assert compare(BATTERY["no_divergence"], also_once, once, Thresholds(), RULE, "main").status == "within"


def test_only_the_lrs_the_checks_look_at_are_compared():
    head = _side([(11.0, 900.0, 3e4), (10.0, 1500.0, 8e4), (12.0, 700.0, 5e4)])
    result = compare(BATTERY["attention_logits"], BASE, head, Thresholds(max_lr=0.01), RULE, "main")
    assert [d.lr for d in result.differences] == [0.01]
    assert result.status == "within"


def test_log_z_is_compared_on_what_the_check_asserts_and_every_check_has_a_statistic():
    assert paired_statistic(BATTERY["log_z"]).name == "log_z_at_the_ends"
    assert paired_statistic(BATTERY["attention_logits"]).log_scale
    for check in BATTERY.values():
        assert paired_statistic(check) is not None and paired_statistic(check).tolerance is not None


def test_each_side_trains_the_runs_seed_and_the_next_ones():
    config = SweepConfig(train=TrainConfig(seed=7))
    assert [c.train.seed for c in seed_configs(config, PairedRule(seeds=4))] == [7, 8, 9, 10]
    assert all(dataclasses.replace(c, train=config.train) == config for c in seed_configs(config, RULE))


@pytest.mark.parametrize("value", ["2", "0", "-3", "three"])
def test_fewer_than_three_seeds_are_refused(value):
    with pytest.raises(ValueError):
        seed_count(value)
    assert seed_count("3") == 3


def test_a_gradient_that_vanishes_is_the_worst_case_not_a_missing_number():
    check = BATTERY["grad_rms_vs_eps"]  # lower is worse, compared in log10
    metric = paired_statistic(check)
    found = difference(metric, 0.1, (500.0, 800.0, 650.0), (0.0, 0.0, 0.0), RULE)
    assert found.worse and found.difference > 10
