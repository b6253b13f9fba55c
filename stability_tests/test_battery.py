"""trainstab's own battery on the built-in models; also the example to copy.

Stable reference configurations must pass every check. Known-unstable ones
must fail the check that names their problem: they are strict xfails, so if
a change to trainstab stopped a check from catching its problem, this file
would fail.
"""

import pytest

from trainstab.testing import CHECK_NAMES, ModelUnderTest, case, expect_failure, parametrize_with_checks

REFERENCE = ModelUnderTest("reference", id="reference")


@parametrize_with_checks([REFERENCE])
def test_the_reference_model_passes_the_battery(model, check):
    check(model)


NO_QK_LAYERNORM = ModelUnderTest("reference", ("qk_layernorm=false",), id="reference-no-qk-layernorm")
POST_LN = ModelUnderTest("reference", ("norm_placement=post",), id="reference-post-ln")
LARGE_INIT = ModelUnderTest("reference", ("init_scale=10",), id="reference-init-x10")
SQUARED = ModelUnderTest("example_models:squared", id="squared-no-norm")
DEAD_BRANCH = ModelUnderTest("example_models:dead_branch", id="dead-branch")


@pytest.mark.parametrize(
    ("model", "check"),
    [
        expect_failure(NO_QK_LAYERNORM, "attention_logits", "attention logits reach ~7e4 at lr 0.3"),
        expect_failure(POST_LN, "lr_sensitivity", "post-LN: LR sensitivity ~0.33"),
        expect_failure(POST_LN, "grad_rms_vs_eps", "post-LN: an MLP's gradient RMS falls near AdamW eps at lr 0.3"),
        expect_failure(LARGE_INIT, "log_z", "10x init: |log Z| ~35"),
        expect_failure(LARGE_INIT, "lr_sensitivity", "10x init: LR sensitivity ~2.7"),
        expect_failure(SQUARED, "no_divergence", "no norm + squared activation diverges at lr 0.3"),
        expect_failure(SQUARED, "loss_spikes", "no norm + squared activation spikes at lr 0.1"),
        expect_failure(DEAD_BRANCH, "parameters_move", "a detached branch never gets a gradient"),
    ],
)
def test_known_unstable_models_fail_the_check_for_their_problem(model, check):
    check(model)


@pytest.mark.parametrize(
    ("model", "check"),
    [
        case(NO_QK_LAYERNORM, "no_divergence"),
        case(SQUARED, "parameters_move"),
        case(DEAD_BRANCH, "attention_logits"),
        case(DEAD_BRANCH, "no_divergence"),
    ],
)
def test_unstable_models_still_pass_the_checks_for_problems_they_do_not_have(model, check):
    check(model)


# Real architectures from transformers, built tiny from a config (no download).
# OLMo 2 has qk-layernorm; GPT-2 and Llama do not, and show the paper's growth.
HF_WITH_QK_NORM = ModelUnderTest("hf:olmo2", id="hf-olmo2")


@parametrize_with_checks([HF_WITH_QK_NORM], checks=[c for c in CHECK_NAMES if c != "lr_sensitivity"])
def test_a_transformers_model_with_qk_norm_passes_the_battery(model, check):
    check(model)


@pytest.mark.parametrize(
    ("model", "check"),
    [
        expect_failure(
            HF_WITH_QK_NORM, "lr_sensitivity", "HF init (std 0.02) barely learns at lr 3e-4 in 200 steps: 0.354"
        ),
        expect_failure(ModelUnderTest("hf:gpt2", id="hf-gpt2"), "attention_logits", "no qk-norm: 1.3e4 at lr 0.3"),
        expect_failure(ModelUnderTest("hf:llama", id="hf-llama"), "attention_logits", "no qk-norm: 4.8e4 at lr 0.3"),
    ],
)
def test_transformers_models_fail_the_checks_for_their_problems(model, check):
    check(model)
