"""z_loss_effect: z-loss pulls log Z toward 0 where it can act, and the check fails where it cannot.

The check trains each model twice, with the configured z-loss (1e-4) and without, and holds the difference
(trainstab.checks.scaling.check_z_loss_effect; bounds calibrated with ``python benchmarks/calibrate.py --z-loss``).
"""

import dataclasses

from trainstab.checks.scaling import Evidence, ScalingThresholds, check_z_loss_effect
from trainstab.pytest_plugin.testing import parametrize_with_checks
from trainstab.run.options import ModelUnderTest, parse_options, sweep_config
from trainstab.train.sweep import run_sweeps

REFERENCE = ModelUnderTest("reference", id="reference")
#: Under this the pull of a model z-loss cannot act on must stay (nats): float32 rounding of log Z = 0.
NO_PULL = 1e-4
#: The failing demonstrations need only the LRs around the best one (0.01): one stack per sweep, not two.
AROUND_THE_BEST_LR = {"lrs": ("the demonstration", "3e-3,1e-2,3e-2")}


# The zoo's 28 models pass too (benchmarks/calibrate.py --z-loss); the reference stands for them here.
@parametrize_with_checks([REFERENCE], checks=["z_loss_effect"])
def test_z_loss_pulls_log_z_toward_zero_on_a_model_it_can_act_on(model, check):
    check(model)


def test_on_a_model_that_returns_log_probabilities_z_loss_cannot_act_and_the_check_fails():
    # 100 steps are enough: log Z is 0 at every step, whatever the weights and the LR.
    model = ModelUnderTest("example_models:log_softmax_output")
    config = sweep_config(parse_options(AROUND_THE_BEST_LR, ["steps=100"]), model)
    result = check_z_loss_effect(Evidence(config, sweeps=run_sweeps), ScalingThresholds())
    assert not result.passed
    assert abs(result.value) < NO_PULL  # no pull at all, not a small one
    assert "does not act on this model's output logits" in result.message


def test_a_coefficient_far_too_large_costs_loss_and_the_check_fails_on_the_cost():
    # z-loss 1, 10,000x PaLM's: log Z is pinned near 0 and the best final loss is 0.10 nats worse (3.6528 at
    # lr 0.03 against 3.5493 at lr 0.01 without it; the same on the default 7-LR grid).
    config = sweep_config(parse_options(AROUND_THE_BEST_LR, ["z_loss=1"]), REFERENCE)
    result = check_z_loss_effect(Evidence(config, sweeps=run_sweeps), ScalingThresholds())
    assert not result.passed
    assert result.value > ScalingThresholds().z_loss_pull  # it pulled: the cost is what fails
    assert "the coefficient is too large for this model" in result.message


def test_with_z_loss_off_the_check_says_there_is_nothing_to_measure():
    config = sweep_config(parse_options({}), REFERENCE)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, z_loss=0.0))
    result = check_z_loss_effect(Evidence(config, sweeps=lambda configs: []), ScalingThresholds())
    assert not result.passed
    assert "z-loss is off for this model (z_loss=0)" in result.message
