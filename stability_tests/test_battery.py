"""trainstab's own battery on the built-in models; also the example to copy.

Stable reference configurations must pass every check. Known-unstable ones
must fail the check that names their problem: they are strict xfails, so if
a change to trainstab stopped a check from catching its problem, this file
would fail.
"""

import pytest

from trainstab.testing import ModelUnderTest, StabilityCheck, parametrize_with_checks

REFERENCE = ModelUnderTest("reference", id="reference")


@parametrize_with_checks([REFERENCE])
def test_the_reference_model_passes_the_battery(model, check):
    check(model)


def _must_fail(model: ModelUnderTest, check: str, why: str):
    return pytest.param(
        model, StabilityCheck(check), id=f"{model}-{check}", marks=pytest.mark.xfail(strict=True, reason=why)
    )


NO_QK_LAYERNORM = ModelUnderTest("reference", ("qk_layernorm=false",), id="reference-no-qk-layernorm")
POST_LN = ModelUnderTest("reference", ("norm_placement=post",), id="reference-post-ln")
LARGE_INIT = ModelUnderTest("reference", ("init_scale=10",), id="reference-init-x10")
SQUARED = ModelUnderTest("example_models:squared", id="squared-no-norm")
DEAD_BRANCH = ModelUnderTest("example_models:dead_branch", id="dead-branch")


@pytest.mark.parametrize(
    ("model", "check"),
    [
        _must_fail(NO_QK_LAYERNORM, "attention_logits", "attention logits reach ~7e4 at lr 0.3"),
        _must_fail(POST_LN, "lr_sensitivity", "post-LN: LR sensitivity ~0.33"),
        _must_fail(POST_LN, "grad_rms_vs_eps", "post-LN: an MLP's gradient RMS falls near AdamW eps at lr 0.3"),
        _must_fail(LARGE_INIT, "log_z", "10x init: |log Z| ~35"),
        _must_fail(LARGE_INIT, "lr_sensitivity", "10x init: LR sensitivity ~2.7"),
        _must_fail(SQUARED, "no_divergence", "no norm + squared activation diverges at lr 0.3"),
        _must_fail(SQUARED, "loss_spikes", "no norm + squared activation spikes at lr 0.1"),
        _must_fail(DEAD_BRANCH, "parameters_move", "a detached branch never gets a gradient"),
    ],
)
def test_known_unstable_models_fail_the_check_for_their_problem(model, check):
    check(model)


@pytest.mark.parametrize(
    ("model", "check"),
    [
        (NO_QK_LAYERNORM, StabilityCheck("no_divergence")),
        (SQUARED, StabilityCheck("parameters_move")),
        (DEAD_BRANCH, StabilityCheck("attention_logits")),
        (DEAD_BRANCH, StabilityCheck("no_divergence")),
    ],
    ids=str,
)
def test_unstable_models_still_pass_the_checks_for_problems_they_do_not_have(model, check):
    check(model)
