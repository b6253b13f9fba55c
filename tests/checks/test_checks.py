import dataclasses
import math

import pytest

from trainstab.checks.battery import (
    BATTERY,
    REPORT_ONLY,
    Thresholds,
    check_attention_logits,
    check_grad_rms_vs_eps,
    check_log_z,
    check_lr_sensitivity,
    check_parameters_move,
    run_check,
)
from trainstab.core.config import SweepConfig
from trainstab.core.results import RunResult, SweepResult, spike_score
from trainstab.pytest_plugin.testing import CHECK_NAMES


def _sweep(*runs: RunResult) -> SweepResult:
    return SweepResult(SweepConfig(), runs, 0.0, runs[0].lr, {}, 0.0)


def _run(lr, losses=(5.0, 4.0), diverged=False, max_logit=10.0):
    history = () if diverged else ({"step": 0.0, "attn/max_logit": max_logit},)
    return RunResult(
        lr=lr, initial_loss=5.0, final_loss=math.nan if diverged else losses[-1], eval_loss=math.nan,
        max_attention_logit=math.nan if diverged else max_logit, log_z_mean=0.0, diverged=diverged,
        diverged_at_step=0 if diverged else None, losses=tuple(losses), history=history,
    )  # fmt: skip


def test_the_battery_and_its_names_agree():
    assert set(BATTERY) <= set(CHECK_NAMES)  # and a team's checks registered to run with it, if any installed


def test_the_spike_score_counts_points_seven_sigma_from_the_rolling_mean():
    flat = [1.0 + 0.01 * ((-1) ** i) for i in range(100)]
    assert spike_score(flat, sigmas=7, window=20) == 0.0
    spiky = list(flat)
    spiky[50] = 3.0
    assert spike_score(spiky, sigmas=7, window=20) == pytest.approx(1 / 80)


def test_a_sudden_drop_in_the_loss_is_not_a_spike():
    flat = [1.0 + 0.01 * ((-1) ** i) for i in range(100)]
    dropped = flat[:50] + [0.5 + 0.01 * ((-1) ** i) for i in range(50)]  # e.g. the model learns to copy
    assert spike_score(dropped, sigmas=7, window=20) == 0.0


def _grad_history(**per_step):
    """Probes at steps 0, 50, 100 with the given gradient RMS per tensor name."""
    return tuple(
        {"step": float(step), **{f"grads/rms/{name}": values[i] for name, values in per_step.items()}}
        for i, step in enumerate((0, 50, 100))
    )


def test_gradient_rms_check_flags_a_tensor_whose_gradient_falls_near_eps():
    run = dataclasses.replace(_run(0.3), history=_grad_history(mlp=(1e-3, 1e-5, 5e-8)))
    result = check_grad_rms_vs_eps(_sweep(run), Thresholds())
    assert not result.passed and "mlp" in result.message and result.value == pytest.approx(5.0)


def test_gradient_rms_check_leaves_out_a_tensor_with_no_learning_signal_from_the_start():
    # A k-norm bias: softmax cancels it, so its gradient is rounding noise (2e-9 to 9e-9 of the largest on the zoo).
    history = _grad_history(mlp=(1e-3, 1e-5, 1e-5), k_norm_bias=(6e-12, 2e-12, 1e-12))
    result = check_grad_rms_vs_eps(_sweep(dataclasses.replace(_run(0.3), history=history)), Thresholds())
    assert result.passed and result.value == pytest.approx(1e3)


def test_gradient_rms_check_flags_an_eps_as_large_as_every_gradient():
    # No tensor is "without signal" because eps is large: the cut is relative to the model's own gradients.
    history = _grad_history(mlp=(1e-3, 1e-3, 1e-3), head=(1e-2, 1e-2, 1e-2))
    sweep = _sweep(dataclasses.replace(_run(0.3), history=history))
    sweep = dataclasses.replace(sweep, config=dataclasses.replace(sweep.config, train=dataclasses.replace(
        sweep.config.train, eps=1e-3)))  # fmt: skip
    result = check_grad_rms_vs_eps(sweep, Thresholds())
    assert not result.passed and result.value == pytest.approx(1.0) and "mlp" in result.message


def test_attention_check_fails_clearly_when_every_run_diverged_at_once():
    result = check_attention_logits(_sweep(_run(0.1, diverged=True), _run(0.3, diverged=True)), Thresholds())
    assert not result.passed
    assert "all diverged" in result.message


def test_attention_check_ignores_lrs_above_the_checked_range():
    result = check_attention_logits(_sweep(_run(0.1, max_logit=10.0), _run(1.0, max_logit=1e6)), Thresholds())
    assert result.passed and result.value == 10.0


def test_attention_attribution_names_the_head_that_grew_first_and_the_largest():
    history = (
        {"step": 0.0, "attn/max_logit": 4.0, "attn/max_logit/layer0/head0": 4.0, "attn/max_logit/layer1/head0": 3.0},
        {"step": 10.0, "attn/max_logit": 150.0, "attn/max_logit/layer0/head0": 50.0,
         "attn/max_logit/layer1/head0": 150.0},
        {"step": 20.0, "attn/max_logit": 9e3, "attn/max_logit/layer0/head0": 9e3,
         "attn/max_logit/layer1/head0": 800.0},
    )  # fmt: skip
    run = dataclasses.replace(_run(0.3, max_logit=9e3), history=history)
    result = check_attention_logits(_sweep(run), Thresholds())
    assert not result.passed
    assert "layer1/head0 grew first: above 100 from step 10" in result.message
    assert "largest in layer0/head0: 9e+03" in result.message


def test_grad_rms_and_loss_spikes_are_report_only_by_default_and_the_rest_asserted():
    # The zoo's measurements behind it: benchmarks/calibrate.py; the reasons: trainstab.checks.battery.REPORT_ONLY.
    assert Thresholds().report_only == frozenset(REPORT_ONLY) == {"grad_rms_vs_eps", "loss_spikes"}
    run = dataclasses.replace(_run(0.3), history=_grad_history(mlp=(1e-3, 1e-5, 5e-8)))
    result = run_check("grad_rms_vs_eps", _sweep(run), Thresholds())
    assert (result.passed, result.asserted, result.verdict) == (False, False, "warn")
    assert "report-only" in result.message and "well-built qk-norm models" in result.message
    asserted = run_check("grad_rms_vs_eps", _sweep(run), Thresholds(report_only=frozenset()))
    assert (asserted.asserted, asserted.verdict) == (True, "FAIL")


def test_lr_sensitivity_says_when_its_number_cannot_tell_stable_from_unstable():
    sweep = dataclasses.replace(_sweep(_run(0.01), _run(0.3)), lr_sensitivity=0.35)
    passed = check_lr_sensitivity(sweep, Thresholds())
    assert passed.passed and "cannot tell stable from unstable" in passed.message and "baseline" in passed.message
    gross = check_lr_sensitivity(dataclasses.replace(sweep, lr_sensitivity=2.7), Thresholds())
    assert not gross.passed and "above 1" in gross.message
    strict = check_lr_sensitivity(sweep, Thresholds(lr_sensitivity=0.4))  # a project's own calibrated bound
    assert strict.passed and "cannot tell" not in strict.message


def _with_entropy(history, **entropy_by_layer):
    """The history with each probe's attention entropy per layer (attn/entropy/layer<N>)."""
    return tuple(
        {**h, **{f"attn/entropy/{layer}": value for layer, value in entropy_by_layer.items()}} for h in history
    )


def test_a_vanished_gradient_in_a_uniform_attention_layer_is_not_called_an_epsilon_problem():
    # The issue-13 user's model: layer-1 attention went uniform (3.20 nats of 3.21 for 64 tokens), and the gradient
    # of blocks/1/attn/k_norm/weight fell under 10x eps. A smaller eps would not help.
    history = _with_entropy(
        _grad_history(**{"blocks/0/mlp/weight": (1e-3, 1e-4, 1e-4), "blocks/1/attn/k_norm/weight": (1e-3, 1e-6, 5e-8)}),
        layer0=2.1,
        layer1=3.20,
    )
    result = check_grad_rms_vs_eps(_sweep(dataclasses.replace(_run(0.3), history=history)), Thresholds())
    assert not result.passed
    assert "the cause is not epsilon: attention in layer 1 is uniform (entropy 3.20 nats of 3.21)" in result.message
    assert "eps=1e-15" not in result.message and "lower the peak LR" in result.message


def test_a_one_hot_attention_layer_is_named_too_and_other_layers_are_not_blamed():
    grads = _grad_history(**{"blocks/0/attn/qkv/weight": (1e-3, 1e-6, 5e-8)})
    one_hot = check_grad_rms_vs_eps(
        _sweep(dataclasses.replace(_run(0.3), history=_with_entropy(grads, layer0=0.05, layer1=2.0))), Thresholds()
    )
    assert "attention in layer 0 is one-hot (entropy 0.05 nats" in one_hot.message
    elsewhere = check_grad_rms_vs_eps(  # layer 1 is uniform, but the tensor lives in layer 0, which is healthy
        _sweep(dataclasses.replace(_run(0.3), history=_with_entropy(grads, layer0=2.0, layer1=3.2))), Thresholds()
    )
    assert "not epsilon" not in elsewhere.message and "eps=1e-15" in elsewhere.message


def test_a_true_epsilon_stall_gets_the_eps_advice_and_points_to_the_size_trend():
    history = _with_entropy(_grad_history(**{"blocks/0/mlp/weight": (1e-3, 1e-6, 5e-8)}), layer0=2.0)
    result = check_grad_rms_vs_eps(_sweep(dataclasses.replace(_run(0.3), history=history)), Thresholds())
    assert "consider eps=1e-15" in result.message and "eps_forecast" in result.message


def test_ignored_parameters_are_left_out_of_the_gradient_check_by_pattern():
    history = _grad_history(**{"blocks/0/mlp/weight": (1e-3, 1e-4, 1e-4), "blocks.1.frozen_gate": (1e-3, 1e-6, 5e-8)})
    sweep = _sweep(dataclasses.replace(_run(0.3), history=history))
    assert not check_grad_rms_vs_eps(sweep, Thresholds()).passed
    assert check_grad_rms_vs_eps(sweep, Thresholds(ignore_params=("blocks.*.frozen_gate",))).passed


def test_parameters_move_fails_on_a_dead_tensor_unless_ignored_and_names_inert_ones_without_failing():
    history = _grad_history(**{"mlp": (1e-3, 1e-3, 1e-3), "unused": (0.0, 0.0, 0.0), "k_norm/bias": (1e-12,) * 3})
    sweep = _sweep(dataclasses.replace(_run(0.3), history=history))
    dead = check_parameters_move(sweep, Thresholds())
    assert not dead.passed and "never received a gradient: unused" in dead.message
    assert "get no learning signal by construction" in dead.message and "k_norm/bias" in dead.message
    kept = check_parameters_move(sweep, Thresholds(ignore_params=("unused",)))
    assert kept.passed and "k_norm/bias" in kept.message and "--trainstab-ignore-params" in kept.message
    quiet = check_parameters_move(sweep, Thresholds(ignore_params=("unused", "*/bias")))
    assert quiet.message == "every parameter tensor received a gradient"


def test_a_real_key_bias_is_found_inert_and_the_model_passes_parameters_move():
    """A LayerNorm on k with a bias (nn.LayerNorm's default): softmax cancels the bias, parameters_move says so."""
    from trainstab.core.config import ModelConfig, TrainConfig
    from trainstab.train.sweep import run_sweep

    config = SweepConfig(
        model_name="user_models:with_key_bias",
        model=ModelConfig(width=16, heads=2, depth=1, context_length=16),
        train=TrainConfig(steps=10, batch_size=4, probe_every=5),
        lrs=(0.01,),
        workers=1,
    )
    result = check_parameters_move(run_sweep(config), Thresholds())
    assert result.passed
    assert "1 tensor(s) get no learning signal by construction" in result.message and "k_norm.bias" in result.message


def test_a_number_inside_a_name_is_not_a_layer_index():
    # "l1_norm" has no layer segment: it matches every layer, so a uniform layer 0 is named.
    grads = _grad_history(**{"attn/k_norm/l1_norm": (1e-3, 1e-6, 5e-8)})
    result = check_grad_rms_vs_eps(
        _sweep(dataclasses.replace(_run(0.3), history=_with_entropy(grads, layer0=3.2))), Thresholds()
    )
    assert "attention in layer 0 is uniform" in result.message


def test_the_value_path_is_not_blamed_on_collapsed_attention():
    grads = _grad_history(**{"blocks/0/attn/v_proj/weight": (1e-3, 1e-6, 5e-8)})
    result = check_grad_rms_vs_eps(
        _sweep(dataclasses.replace(_run(0.3), history=_with_entropy(grads, layer0=3.2))), Thresholds()
    )
    assert "not epsilon" not in result.message


def test_baselines_leave_ignored_tensors_out_too():
    from trainstab.gate.baseline import measure

    history = _grad_history(**{"mlp": (1e-3, 1e-4, 1e-4), "frozen": (1e-3, 1e-6, 5e-8), "unused": (0.0, 0.0, 0.0)})
    sweep = _sweep(dataclasses.replace(_run(0.3), history=history))
    ignoring = Thresholds(ignore_params=("frozen", "unused"))
    assert measure(sweep, "grad_rms_vs_eps", Thresholds())["grad_rms_over_eps"]["0.3"] == pytest.approx(5.0)
    assert measure(sweep, "grad_rms_vs_eps", ignoring)["grad_rms_over_eps"]["0.3"] == pytest.approx(1e4)
    assert measure(sweep, "parameters_move", Thresholds())["dead_tensors"] == 1
    assert measure(sweep, "parameters_move", ignoring)["dead_tensors"] == 0


def test_an_ignore_pattern_that_matches_no_parameter_is_refused_with_the_closest_names():
    from trainstab.core.errors import TrainstabError

    history = _grad_history(**{"blocks.0.mlp.weight": (1e-3,) * 3, "unused_scale": (0.0,) * 3})
    sweep = _sweep(dataclasses.replace(_run(0.3), history=history))
    assert check_parameters_move(sweep, Thresholds(ignore_params=("unused_scale",))).passed
    for check in (check_parameters_move, check_grad_rms_vs_eps):
        with pytest.raises(
            TrainstabError, match=r"pattern 'unused_sacle' matches no parameter.*closest are unused_scale"
        ):
            check(sweep, Thresholds(ignore_params=("unused_scale", "unused_sacle")))


# --- log_z: where training starts and leaves the output logits, not a transient excursion --------------------------


def _log_z_run(lr: float, extremes: list[float]) -> RunResult:
    """A run whose probes have these |log Z| extremes over the tokens (the max; mean and min below it)."""
    history = tuple(
        {"step": 10.0 * i, "output/log_z/mean": x - 1.0, "output/log_z/min": x - 2.0, "output/log_z/max": x}
        for i, x in enumerate(extremes)
    )
    return dataclasses.replace(_run(lr), history=history)


def test_a_transient_excursion_of_log_z_mid_run_passes():
    # Width 256, LR 0.3: every qk-norm zoo model's log Z rose to 40-53 and came back near 6 (issue 28).
    result = check_log_z(_sweep(_log_z_run(0.3, [6.5, 12.0, 33.0, 18.0, 5.6])), Thresholds())
    assert result.passed and result.value == pytest.approx(6.5)
    assert "at initialisation and after training within 6.5" in result.message


def test_a_gross_init_fails_and_is_named_as_the_init():
    # The zoo's 10x init: |log Z| ~35 at initialisation, trained back to ~6.
    result = check_log_z(_sweep(_log_z_run(0.01, [35.3, 20.0, 9.0, 6.3])), Thresholds())
    assert not result.passed and result.value == pytest.approx(35.3)
    assert "start far from 0: |log Z| 35.3 at initialisation" in result.message and "z-loss" not in result.message


def test_a_drift_that_lasts_to_the_end_of_training_fails_and_points_to_z_loss():
    result = check_log_z(_sweep(_log_z_run(0.1, [6.4, 9.0, 16.0, 24.0])), Thresholds())
    assert not result.passed and result.value == pytest.approx(24.0)
    assert "drifted: |log Z| 24 after training at lr=0.1" in result.message and "z-loss 1e-4" in result.message


def test_a_run_that_ends_in_non_finite_probes_is_judged_on_its_last_finite_one():
    result = check_log_z(_sweep(_log_z_run(0.3, [6.4, 25.0, math.inf])), Thresholds())
    assert not result.passed and result.value == pytest.approx(25.0)
