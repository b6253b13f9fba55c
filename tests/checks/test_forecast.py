"""The log-log forecast: fits, refusals and verdicts, on synthetic ladders (no training)."""

import math
from types import SimpleNamespace

import pytest

from trainstab.checks.forecast import (
    MAX_EXTRAPOLATION_DECADES,
    MAX_RESIDUAL_DEX,
    fit_log_log,
    forecast_attention_logits,
    forecast_gradient_rms,
    gradient_rms_floor,
)
from trainstab.core.config import SweepConfig
from trainstab.core.errors import Inconclusive, TrainstabError
from trainstab.core.ladder import LadderResult, Rung
from trainstab.core.results import RunResult, SweepResult

FIT_TOLERANCE = 1e-9  # an exact power law must be recovered to rounding


def _run(lr, max_logit, grad_rms=1e-4, diverged=False):
    history = tuple(
        {"step": float(step), "attn/max_logit": max_logit, "grads/rms/blocks.0.qkv": grad_rms} for step in (0, 50, 100)
    )
    return RunResult(
        lr=lr, initial_loss=6.0, final_loss=math.nan if diverged else 3.5, eval_loss=3.5,
        max_attention_logit=math.nan if diverged else max_logit, log_z_mean=5.0, diverged=diverged,
        diverged_at_step=10 if diverged else None, losses=(6.0, 3.5), history=() if diverged else history,
    )  # fmt: skip


def _ladder(values_by_lr, parameters=(1e4, 1e5, 1e6), grads_by_lr=None, diverged=()):
    rungs = []
    for i, n in enumerate(parameters):
        runs = tuple(
            _run(lr, values[i], grads_by_lr[lr][i] if grads_by_lr else 1e-4, (lr, i) in diverged)
            for lr, values in values_by_lr.items()
        )
        rungs.append(Rung(f"width={i}", int(n), SweepResult(SweepConfig(), runs, 0.1, 0.01, {}, 0.0)))
    return LadderResult("width", tuple(rungs))


def test_a_power_law_is_recovered_and_extrapolated():
    fit = fit_log_log([1e4, 1e5, 1e6], [10.0, 100.0, 1000.0], "x")
    assert fit.degree == 1
    assert fit.residual_rms_dex < FIT_TOLERANCE
    assert fit.predict(1e8) == pytest.approx(1e5, rel=1e-6)


def test_the_papers_quadratic_is_available_from_four_sizes():
    fit = fit_log_log([1e4, 1e5, 1e6, 1e7], [10.0, 100.0, 2000.0, 1e5], "x", degree=2)
    assert fit.degree == 2
    assert fit.residual_rms_dex < FIT_TOLERANCE + 0.1


def test_a_quadratic_from_three_sizes_is_refused_as_it_leaves_no_residual():
    with pytest.raises(TrainstabError, match=r"degree-2 fit; measure at least 4"):
        fit_log_log([1e4, 1e5, 1e6], [1.0, 2.0, 3.0], "x", degree=2)


def test_fewer_than_three_sizes_are_refused_with_the_fix():
    with pytest.raises(TrainstabError, match=r"from 2 size.*at least 3"):
        fit_log_log([1e4, 1e5], [1.0, 2.0], "max attention logit")


def test_a_fit_that_does_not_fit_is_refused():
    with pytest.raises(TrainstabError, match=r"does not follow a power law.*refusing to extrapolate"):
        fit_log_log([1e4, 1e5, 1e6], [10.0, 1e4, 10.0], "max attention logit at lr=0.1")


def test_the_residual_tolerance_is_a_factor_of_two():
    assert pytest.approx(2.0, rel=0.01) == 10**MAX_RESIDUAL_DEX


def test_a_concave_growth_fit_is_held_at_its_peak_instead_of_forecasting_safety():
    # Rises then falls: a parabola would forecast ever smaller logits at larger sizes.
    fit = fit_log_log([1e4, 1e5, 1e6, 1e7], [10.0, 300.0, 1000.0, 300.0], "x", unsafe="above", degree=2)
    assert fit.held_from_log_params is not None
    assert fit.predict(1e12) == pytest.approx(fit.predict(10**fit.held_from_log_params))


def test_a_convex_shrinking_fit_is_held_at_its_minimum():
    fit = fit_log_log([1e4, 1e5, 1e6, 1e7], [1e-3, 1e-4, 5e-5, 1e-4], "x", unsafe="below", degree=2)
    assert fit.held_from_log_params is not None
    assert fit.predict(1e12) <= 1e-4


def test_a_growing_lr_is_flagged_at_the_target_and_a_flat_one_is_not():
    forecast = forecast_attention_logits(_ladder({0.01: [5.0, 5.5, 6.0], 0.1: [10.0, 100.0, 1000.0]}), 1e8)
    verdicts = {f.lr: f.crosses for f in forecast.per_lr}
    assert verdicts == {0.01: False, 0.1: True}
    assert forecast.per_lr[1].forecast == pytest.approx(1e5, rel=1e-6)
    assert "CROSSES" in forecast.describe() and "residuals" in forecast.describe()


def test_a_size_already_above_the_level_or_diverged_counts_as_crossed_without_a_fit():
    ladder = _ladder({0.3: [2e4, 5e4, 9e4], 0.1: [10.0, 20.0, 40.0]}, diverged={(0.1, 2)})
    forecast = forecast_attention_logits(ladder, 1e6)
    assert [(f.lr, f.crosses, f.already_at) for f in forecast.per_lr] == [(0.3, True, 10000), (0.1, True, 1000000)]


def test_lrs_above_max_lr_are_not_forecast():
    forecast = forecast_attention_logits(_ladder({0.1: [1.0, 2.0, 3.0], 1.0: [1e5, 1e6, 1e7]}), 1e9, max_lr=0.3)
    assert [f.lr for f in forecast.per_lr] == [0.1]


def test_gradient_rms_falling_toward_eps_is_flagged_and_a_smaller_eps_clears_it():
    grads = {0.1: [1e-5, 1e-6, 1e-7]}
    ladder = _ladder({0.1: [1.0, 1.0, 1.0]}, grads_by_lr=grads)
    assert forecast_gradient_rms(ladder, 1e8, ratio_to_eps=10.0).flagged  # 1e-9 < 10 x 1e-8
    import dataclasses

    tiny_eps = SweepConfig(train=dataclasses.replace(SweepConfig().train, eps=1e-15))
    cleared = LadderResult("width", tuple(dataclasses.replace(r, sweep=dataclasses.replace(r.sweep, config=tiny_eps))
                                          for r in ladder.rungs))  # fmt: skip
    assert not forecast_gradient_rms(cleared, 1e8, ratio_to_eps=10.0).flagged


def _with_eps(ladder, eps):
    import dataclasses

    config = SweepConfig(train=dataclasses.replace(SweepConfig().train, eps=eps))
    return LadderResult(
        "width", tuple(dataclasses.replace(r, sweep=dataclasses.replace(r.sweep, config=config)) for r in ladder.rungs)
    )


def test_a_scattered_gradient_floor_far_above_the_level_is_clear_without_a_fit_and_not_forecast_near_it():
    # The AVX2 machine of issue 12: the floor at lr 0.3 scatters by 0.8 decades between tensors, nine decades
    # above eps 1e-15's level; a least-squares fit would refuse (residual 0.32 > 0.3).
    grads = {0.3: [1.26e-05, 2.56e-05, 2.96e-06]}
    ladder = _ladder({0.3: [1.0, 1.0, 1.0]}, parameters=(2.48e4, 5.56e4, 9.87e4), grads_by_lr=grads)
    clear = forecast_gradient_rms(_with_eps(ladder, 1e-15), 1e9, ratio_to_eps=10.0)
    (lr,) = clear.per_lr
    assert not lr.crosses and lr.fit is None and "even a fall of 1 decade(s) per decade stays above" in clear.describe()
    near = forecast_gradient_rms(_with_eps(ladder, 1e-8), 1e9, ratio_to_eps=10.0)  # in reach, but no trend
    (lr,) = near.per_lr
    assert not lr.crosses and lr.fit is None and "not falling with size" in near.describe()


def test_the_gradient_floor_is_the_quietest_tensors_median_after_warmup():
    history = (
        {"step": 0.0, "grads/rms/a": 1e-5, "grads/rms/b": 1.0},  # warm-up: ignored
        {"step": 20.0, "grads/rms/a": 1e-3, "grads/rms/b": 1e-2},
        {"step": 30.0, "grads/rms/a": 3e-3, "grads/rms/b": 1e-2},
        {"step": 40.0, "grads/rms/a": 2e-3, "grads/rms/b": 1e-2},
    )
    run = RunResult(0.1, 6.0, 3.0, 3.0, 1.0, 0.0, False, None, (6.0, 3.0), history)
    assert gradient_rms_floor(run, warmup_steps=20) == pytest.approx(2e-3)


def test_the_gradient_floor_leaves_out_a_tensor_with_no_learning_signal():
    # minGPT with qk-norm: its k-norm bias gets ~5e-11 at every width (softmax cancels it), which flagged eps 1e-15
    # at 1e9 parameters from rounding noise (benchmarks/calibrate.py --scaling).
    history = (
        {"step": 0.0, "grads/rms/k_norm.bias": 5e-11, "grads/rms/b": 1e-2},
        {"step": 20.0, "grads/rms/k_norm.bias": 4e-11, "grads/rms/b": 1e-3},
        {"step": 30.0, "grads/rms/k_norm.bias": 6e-11, "grads/rms/b": 2e-3},
    )
    run = RunResult(0.1, 6.0, 3.0, 3.0, 1.0, 0.0, False, None, (6.0, 3.0), history)
    assert gradient_rms_floor(run, warmup_steps=20) == pytest.approx(1.5e-3)


def test_a_target_size_that_is_not_positive_is_refused():
    with pytest.raises(TrainstabError, match="positive parameter count"):
        forecast_attention_logits(_ladder({0.1: [1.0, 2.0, 3.0]}), 0)


# The issue-13 user's ladders (widths 32/48/64 of a hand-written GPT), whose noise was forecast to cross 1e4.
USER_LADDER_PARAMETERS = (2.47e4, 5.56e4, 9.87e4)


def test_values_that_do_not_rise_at_every_size_are_not_extrapolated_and_say_so():
    ladder = _ladder({0.0003: [0.21, 1.89, 1.32], 0.3: [4.76, 4.22, 18.9]}, parameters=USER_LADDER_PARAMETERS)
    forecast = forecast_attention_logits(ladder, 1e9, max_decades=4.1)  # even at the full 4 decades
    assert not forecast.flagged
    assert all(f.fit is None for f in forecast.per_lr)
    assert "lr=0.3: measured 4.76 4.22 18.9; not increasing with size, so there is no trend" in forecast.describe()


def test_values_far_below_the_level_are_clear_without_a_fit():
    forecast = forecast_attention_logits(_ladder({0.0003: [0.2, 0.3, 0.5]}, parameters=USER_LADDER_PARAMETERS), 1e9)
    (lr,) = forecast.per_lr
    assert lr.fit is None and not lr.crosses
    assert "even a rise of 2 decade(s) per decade stays below 5e+03" in forecast.describe()


def test_the_forecast_stops_at_the_extrapolation_cap_unless_asked_for_more():
    # The zoo's GPT-2-init qk-norm model at LR 0.1: a clean rise that the cap keeps from becoming a false alarm.
    ladder = _ladder({0.1: [7.31, 12.9, 24.4]}, parameters=USER_LADDER_PARAMETERS)
    capped = forecast_attention_logits(ladder, 1e9)
    assert capped.forecast_parameters == pytest.approx(9.87e4 * 10**MAX_EXTRAPOLATION_DECADES)
    assert not capped.flagged and capped.per_lr[0].forecast < 1e4
    assert "(the extrapolation cap)" in capped.describe() and "--trainstab-max-extrapolation" in capped.describe()
    assert forecast_attention_logits(ladder, 1e9, max_decades=4.1).flagged  # asked for the whole 4 decades
    assert forecast_attention_logits(ladder, 1e6).forecast_parameters == 1e6  # a target within the cap
    with pytest.raises(TrainstabError, match="must be positive"):
        forecast_attention_logits(ladder, 1e9, max_decades=0)


def test_a_clean_rise_within_the_cap_is_still_flagged():
    # The reference without qk-layernorm at LR 0.03 and 0.1 (widths 32/48/64, 200 steps).
    ladder = _ladder({0.03: [36.2, 108, 243], 0.1: [1.26e3, 3.06e3, 6.57e3]}, parameters=USER_LADDER_PARAMETERS)
    assert [f.lr for f in forecast_attention_logits(ladder, 1e9).flagged] == [0.03, 0.1]


def test_a_series_within_a_decade_of_the_level_is_fitted_even_without_a_clean_rise():
    ladder = _ladder({0.3: [3000.0, 2900.0, 9000.0]}, parameters=USER_LADDER_PARAMETERS)
    (lr,) = forecast_attention_logits(ladder, 1e9).per_lr
    assert lr.fit is not None and lr.crosses


def test_a_capped_forecast_names_the_size_it_was_made_at():
    from trainstab.checks.scaling import ScalingConfig, ScalingThresholds, check_attention_forecast

    ladder = _ladder({0.03: [36.2, 108, 243]}, parameters=USER_LADDER_PARAMETERS)
    # The flag rests on the trend alone, so a 4th rung confirms it: here the trend holds there.
    confirmed = _ladder({0.03: [36.2, 108, 243, 1100]}, parameters=(*USER_LADDER_PARAMETERS, 3.9e5))
    evidence = SimpleNamespace(
        width_ladder=ladder, confirmed_width_ladder=confirmed, base=SweepConfig(), scaling=ScalingConfig()
    )
    result = check_attention_forecast(evidence, ScalingThresholds())
    assert not result.passed and "at 3.9e+07 parameters" in result.message  # 2 decades past the 4th rung


def test_an_lr_that_crosses_decides_whatever_another_lrs_scatter():
    # On the zoo (benchmarks/calibrate.py --scaling) a stable model's gradient floor at LR 0.3 switched between
    # tensors (2.67e-7, 7.47e-6, 6.1e-6) while LR 3e-4 fell cleanly toward eps 1e-8: the scatter made the whole
    # check inconclusive although one LR was forecast to cross.
    grads = {3e-4: [2.61e-4, 1.14e-4, 7.34e-5], 0.3: [2.67e-7, 7.47e-6, 6.1e-6]}
    values = {3e-4: [4.0] * 3, 0.3: [30.0] * 3}
    ladder = _with_eps(_ladder(values, parameters=(2.71e4, 5.9e4, 1.03e5), grads_by_lr=grads), 1e-8)
    forecast = forecast_gradient_rms(ladder, 1e9, ratio_to_eps=10.0)
    assert [f.lr for f in forecast.flagged] == [3e-4]
    (scattered,) = [f for f in forecast.per_lr if f.refused]
    assert scattered.lr == 0.3 and not scattered.crosses
    assert "lr=0.3: measured 2.67e-07 7.47e-06 6.1e-06; no forecast: the gradient RMS" in forecast.describe()


def test_a_scatter_with_no_lr_crossing_is_inconclusive():
    grads = {3e-4: [2.6e-4, 2.5e-4, 2.6e-4], 0.3: [2.67e-7, 7.47e-6, 6.1e-6]}
    values = {3e-4: [4.0] * 3, 0.3: [30.0] * 3}
    ladder = _with_eps(_ladder(values, parameters=(2.71e4, 5.9e4, 1.03e5), grads_by_lr=grads), 1e-8)
    with pytest.raises(Inconclusive, match=r"at lr=0\.3 does not follow a power law"):
        forecast_gradient_rms(ladder, 1e9, ratio_to_eps=10.0)
