"""The battery sees attention however a model writes it (attention_models.py, no trainstab calls).

Built on nn.MultiheadAttention with its defaults, on nn.TransformerDecoderLayer
(self- and cross-attention) and on minGPT's hand-written softmax(q kᵀ): none
has qk-norm, and each must fail attention_logits at LR 0.3. Each must also
pass the checks for problems it does not have, which a model whose attention
could not be seen would error on; minGPT with qk-layernorm keeps its logits
bounded and passes attention_logits. Gemma 2 (transformers, eager attention)
soft-caps its attention logits at 50: the pre-cap logits, which the capture
records, still grow past the bound. A GPT written with flex_attention (a causal
BlockMask, GQA) trains through trainstab's dense emulation on the CPU: without
qk-norm it fails attention_logits, with RMSNorm on q and k it passes.
"""

import pytest

from trainstab.pytest_plugin.testing import case, expect_failure

pytestmark = pytest.mark.long  # the long tier: `pytest -m long` (.ci/run runs it after the main command)

MHA = "attention_models:mha"
DECODER_LAYERS = "attention_models:decoder_layers"
MINGPT = "attention_models:mingpt"
MINGPT_QK_NORM = "attention_models:mingpt_qk_norm"
GEMMA2 = "hf:gemma2"
FLEX = "attention_models:flex_gpt"
FLEX_QK_NORM = "attention_models:flex_gpt_qk_norm"


@pytest.mark.parametrize(
    ("model", "check"),
    [
        expect_failure(MHA, "attention_logits", "nn.MultiheadAttention, no qk-norm: 1.1e5 (AVX2: 1.7e5) at lr 0.3"),
        expect_failure(
            DECODER_LAYERS, "attention_logits", "TransformerDecoderLayer, no qk-norm: 1.1e5 (AVX2: 1.3e5) at lr 0.3"
        ),
        expect_failure(MINGPT, "attention_logits", "minGPT attention, no qk-norm: 1.6e5 (AVX2: 1.2e5) at lr 0.3"),
        expect_failure(
            GEMMA2, "attention_logits", "soft-capped at 50, no qk-norm: 5.3e3 (AVX2: 7.5e3) pre-cap at lr 0.3"
        ),
        expect_failure(FLEX, "attention_logits", "flex_attention, GQA, no qk-norm: 1.2e5 (AVX2: 7.5e4) at lr 0.3"),
    ],
)
def test_models_without_qk_norm_fail_attention_logits_however_they_write_attention(model, check):
    check(model)


@pytest.mark.parametrize(
    ("model", "check"),
    [
        case(MINGPT_QK_NORM, "attention_logits"),
        case(FLEX_QK_NORM, "attention_logits"),
        *(
            case(model, check)
            for model in (MHA, DECODER_LAYERS, MINGPT, GEMMA2, FLEX)
            for check in ("no_divergence", "log_z")
        ),
    ],
)
def test_the_same_models_pass_the_checks_for_problems_they_do_not_have(model, check):
    check(model)
