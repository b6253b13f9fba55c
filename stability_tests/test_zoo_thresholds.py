"""The zoo models nearest each asserted bound, kept as tests so CI sees a bound drift on any CPU kernel set.

``benchmarks/calibrate.py --robustness`` picks them: over seeds 0-2, both
profiles and the native and AVX2 kernel sets, these are the stable models
closest below a bound and the unstable ones closest above it. CI runs this
file under the machine's kernels and under ``ATEN_CPU_CAPABILITY=avx2``.
"""

import pytest

from trainstab.pytest_plugin.testing import ModelUnderTest, expect_failure, parametrize_with_checks

pytestmark = pytest.mark.long  # the long tier: `pytest -m long` (.ci/run runs it after the main command)

# Stable, nearest the bounds: |log Z| 15.2 (AVX2), LR sensitivity 0.377-0.385, attention logits up to 204 (OLMo 2,
# in test_battery.py).
NEAREST_STABLE = [
    ModelUnderTest("gpt_models:tied_gpt2_init_qk_norm", id="gpt-tied-gpt2-init-qk-norm"),
    ModelUnderTest("hf:gemma3_text", id="hf-gemma3"),
]


@parametrize_with_checks(NEAREST_STABLE)
def test_the_stable_zoo_models_nearest_the_bounds_pass_every_check(model, check):
    check(model)


POST_LN = ModelUnderTest("gpt_models:post_ln", id="gpt-post-ln")
HEAD_X30 = ModelUnderTest("gross_models:head_init_x30", id="gpt-head-init-x30")


@pytest.mark.parametrize(
    ("model", "check"),
    [
        expect_failure(POST_LN, "attention_logits", "post-LN, no qk-norm: 2.1e3 to 5.6e3 at lr 0.3, the mildest"),
        expect_failure(HEAD_X30, "log_z", "output head 30x: |log Z| ~50 at init"),
        expect_failure(HEAD_X30, "lr_sensitivity", "output head 30x: LR sensitivity ~5, a gross problem"),
    ],
)
def test_the_unstable_zoo_models_nearest_the_bounds_fail_the_check_for_their_problem(model, check):
    check(model)
