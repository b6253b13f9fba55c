"""Scaling checks on zoo models: each shown passing where the problem is absent and failing where present.

They train ladders of sizes (widths 32, 48, 64 and depths 1, 2, 4 at the
default 200 steps) through the session cache, so the rungs shared with the
battery (width 32, depth 2) train once. The stability forecasts extrapolate
to the default target of 1e9 non-embedding parameters. The models come from
the calibration zoo (stability_tests/zoo.py), where the defaults were set
(``python benchmarks/calibrate.py --scaling``); the µP checks are shown on the
reference, the one zoo model with a µP switch.
"""

import pytest

from trainstab.pytest_plugin.testing import (
    MUP_CHECK_NAMES,
    STABILITY_FORECAST_NAMES,
    ModelUnderTest,
    expect_failure,
    parametrize_with_checks,
)

pytestmark = pytest.mark.long  # the long tier: `pytest -m long` (.ci/run runs it after the main command)

# A hand-written Llama-style GPT with qk-norm (a stable zoo model) with the paper's eps for large models.
STABLE = ModelUnderTest("gpt_models:llama_style_qk_norm", ("eps=1e-15",), id="gpt-llama-style-qk-norm-eps1e-15")


@parametrize_with_checks([STABLE], checks=list(STABILITY_FORECAST_NAMES))
def test_a_stable_zoo_model_with_eps_1e_15_passes_every_stability_forecast(model, check):
    check(model)


# The reference in µParam (simple): what the µP checks assert.
MUP = ModelUnderTest("reference", ("parameterization=mup_simple",), id="reference-mup")


@parametrize_with_checks([MUP], checks=list(MUP_CHECK_NAMES))
def test_the_reference_in_mup_passes_the_mup_checks(model, check):
    check(model)


NO_QK_NORM = ModelUnderTest("gpt_models:llama_style", id="gpt-llama-style")
AT_EPS_1E_8 = ModelUnderTest("gpt_models:llama_style_qk_norm", id="gpt-llama-style-qk-norm")
STANDARD = ModelUnderTest("reference", id="reference")


@pytest.mark.parametrize(
    ("model", "check"),
    [
        expect_failure(NO_QK_NORM, "attention_forecast", "no qk-norm: forecast 4e4 at 1e7 parameters"),
        expect_failure(AT_EPS_1E_8, "eps_forecast", "eps 1e-8: gradient RMS forecast near eps at 1e9"),
        expect_failure(STANDARD, "lr_transfer", "standard parameterization: optimal LR drifts with width"),
        expect_failure(STANDARD, "coordinates", "standard parameterization: activation RMS ~ width^1.5"),
    ],
)
def test_models_with_a_scaling_problem_fail_the_check_for_it(model, check):
    check(model)
