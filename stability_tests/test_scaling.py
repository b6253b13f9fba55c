"""Scaling checks on the built-in model: each shown passing where the problem is absent and failing where present.

They train ladders of sizes (widths 32, 48, 64 and depths 1, 2, 4 at the
default 200 steps) through the session cache, so the rungs shared with the
battery (width 32, depth 2) train once. The forecasts extrapolate to the
default target of 1e9 non-embedding parameters.
"""

import pytest

from trainstab.testing import SCALING_CHECK_NAMES, ModelUnderTest, expect_failure, parametrize_with_checks

pytestmark = pytest.mark.long  # the long tier: `pytest -m long` (.ci/run runs it after the main command)

# The paper's recommendations together: qk-layernorm and z-loss (defaults), eps 1e-15, µParam (simple).
RECOMMENDED = ModelUnderTest("reference", ("eps=1e-15", "parameterization=mup_simple"), id="reference-eps1e-15-mup")


@parametrize_with_checks([RECOMMENDED], checks=list(SCALING_CHECK_NAMES))
def test_the_reference_with_the_papers_recommendations_passes_every_scaling_check(model, check):
    check(model)


DEFAULT = ModelUnderTest("reference", id="reference")
NO_QK_LAYERNORM = ModelUnderTest("reference", ("qk_layernorm=false",), id="reference-no-qk-layernorm")
POST_LN = ModelUnderTest("reference", ("norm_placement=post",), id="reference-post-ln")


@pytest.mark.parametrize(
    ("model", "check"),
    [
        expect_failure(NO_QK_LAYERNORM, "attention_forecast", "lr 0.3 above 1e4 at every width; 0.03, 0.1 forecast"),
        expect_failure(DEFAULT, "eps_forecast", "eps 1e-8: gradient RMS at lr 0.1 forecast near eps at 1e9"),
        expect_failure(DEFAULT, "lr_transfer", "standard parameterization: optimal LR drifts ~-0.5 dec/dec"),
        expect_failure(DEFAULT, "coordinates", "standard parameterization: activation RMS ~ width^1.5"),
        expect_failure(POST_LN, "sensitivity_scaling", "post-LN: LR sensitivity above 0.3"),
    ],
)
def test_models_with_a_scaling_problem_fail_the_check_for_it(model, check):
    check(model)
