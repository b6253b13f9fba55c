"""trainstab trains causal LMs with float32 parameters (issue 27): a model whose logits at a position see a later
token, or whose parameters are bf16, fp16 or float64, is refused in one line before any training (bad input: exit
2, a failed test under pytest), never trained into verdicts that mean nothing or a traceback in the optimizer.

The models are in tests/bad_models.py.
"""

import os
import re
from pathlib import Path

import pytest

from trainstab.cli.main import main
from trainstab.core.config import ModelConfig
from trainstab.core.errors import EXIT_BAD_INPUT, TrainstabError
from trainstab.train.models import check_model

pytest_plugins = ["pytester"]

TESTS = Path(__file__).parents[1]
CONFIG = ModelConfig()  # depth 2: a leak of one position per layer reaches two positions back
LEAK = re.compile(r"changing the token at position (\d+) changed the logits at position (\d+) \(")
CLI = ["check", "--checks", "no_divergence", "--steps", "5", "--lrs", "1e-2", "--no-progress"]


def _refusal(model: str) -> str:
    with pytest.raises(TrainstabError) as raised:
        check_model(model, CONFIG, seed=0)
    message = str(raised.value)
    assert "\n" not in message
    return message


def _leak(message: str) -> tuple[int, int]:
    match = LEAK.search(message)
    assert match, message
    token, position = int(match[1]), int(match[2])
    assert 0 <= position < token < CONFIG.context_length
    return token, position


def test_a_bidirectional_model_is_refused_naming_the_token_changed_and_the_first_position_it_moved():
    message = _refusal("bad_models:bidirectional")
    assert message.startswith("model 'bad_models:bidirectional' is not causal: changing the token at position ")
    assert _leak(message)[1] == 0  # every position sees every token: the first one moved
    assert "trainstab trains causal LMs" in message and "is_causal=True" in message


def test_a_mask_off_by_one_is_caught_at_the_positions_it_leaks_to():
    token, position = _leak(_refusal("bad_models:sees_next_token"))
    assert position == token - CONFIG.depth  # each layer sees one token further ahead


def test_a_mask_broken_only_in_training_mode_is_caught_and_said_so():
    message = _refusal("bad_models:bidirectional_when_training")
    assert message.startswith(
        "model 'bad_models:bidirectional_when_training' is not causal in training mode (model.train()), only in "
        "eval mode: changing the token at position "
    )
    assert "check what its forward does when self.training" in message


@pytest.mark.parametrize(
    "model",
    [
        "reference",
        "user_models:stable",
        "bad_models:causal_with_dropout",  # its dropout draws the same masks in both forwards: no false leak
        "gpt_models:llama_style",
        "attention_models:mingpt",
        "attention_models:mha",
        "attention_models:decoder_layers",
    ],
)
def test_causal_models_pass_the_exact_check(model):
    check_model(model, CONFIG, seed=0)


@pytest.mark.parametrize(
    "model",
    [
        "bidirectional_zero_head",  # every logit exactly 0 at initialisation
        "bidirectional_zero_attention_output",  # attention adds exactly 0 at initialisation
        "offset_small_leak",  # logits + 1e4: a bound from |logit| (0.1) would pass its 1e-2 leak
        "bidirectional_layer_scale[scale=1e-05]",  # LayerScale 1e-5: its leak, ~3e-7 of the spread, under 1e-5
        "bidirectional_layer_scale[scale=0.0001]",
    ],
)
def test_a_leak_hidden_by_a_zero_initialised_layer_or_a_logit_offset_is_refused(model):
    message = _refusal(f"bad_models:{model}")
    assert message.startswith(f"model 'bad_models:{model}' is not causal: changing the token at position ")
    _leak(message)


def test_a_model_that_hard_codes_its_training_batch_size_passes_the_check_and_trains(capsys, monkeypatch, tmp_path):
    check_model("bad_models:fixed_batch_size", CONFIG, seed=0)
    monkeypatch.chdir(tmp_path)
    assert main([*CLI, "--model", "bad_models:fixed_batch_size"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("fails_without_gradients", "RuntimeError: this model only runs with gradients ("),
        ("exits_without_gradients", "SystemExit: 3 ("),
    ],
)
def test_a_model_that_fails_only_without_gradients_is_refused_in_one_line(model, says):
    message = _refusal(f"bad_models:{model}")
    assert message.startswith(
        f"model 'bad_models:{model}' failed on a forward without gradients (torch.no_grad, in training mode), a "
        f"(16, {CONFIG.context_length}) batch of token ids, as trainstab's causality check runs it: "
    )
    assert says in message and "bad_models.py:" in message  # the model's own line


def test_an_hf_encoder_is_causal_as_a_decoder_and_refused_as_an_encoder_naming_the_leak():
    pytest.importorskip("transformers")
    check_model("hf:bert", CONFIG, seed=0)  # built with is_decoder=True: bit-exact prefixes
    check_model("hf:kolibri1", CONFIG, seed=0)  # a mixture of experts: causal, within rounding (3e-7)
    message = _refusal("hf:bert[is_decoder=false]")
    assert message.startswith("model 'hf:bert[is_decoder=false]' is not causal: changing the token at position ")
    assert _leak(message)[1] == 0  # an encoder: every position sees every token


@pytest.mark.parametrize(
    ("model", "dtypes", "first"),
    [
        ("bf16_parameters", "bfloat16", "pos"),
        ("fp16_parameters", "float16", "pos"),
        ("float64_parameters", "float64", "pos"),
        ("one_bf16_layer", "bfloat16", "head.weight"),
    ],
)
def test_parameters_not_in_float32_are_refused_before_training(model, dtypes, first):
    message = _refusal(f"bad_models:{model}")
    assert message.startswith(f"model 'bad_models:{model}' has {dtypes} parameters (")
    assert f"the first {first});" in message
    assert "model.float()" in message and "--precision bf16" in message


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("bidirectional", "is not causal: changing the token at position"),
        ("bf16_parameters", "bfloat16 parameters"),
        ("fails_without_gradients", "failed on a forward without gradients"),
    ],
)
def test_the_cli_exits_2_with_one_line(model, says, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main([*CLI, "--model", f"bad_models:{model}"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("trainstab: ")]
    assert line.startswith(f"trainstab: error: model 'bad_models:{model}' ") and says in line
    assert "Traceback" not in err


def test_under_pytest_a_non_causal_model_fails_its_test_in_one_line(pytester, monkeypatch):
    # In a pytest process of its own: torch cannot be imported twice in this one (see test_exit_codes.py).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile(
        "from trainstab.testing import parametrize_with_checks\n\n\n"
        '@parametrize_with_checks(["bad_models:bidirectional"], checks=["no_divergence"])\n'
        "def test_model(model, check):\n"
        "    check(model)\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:cacheprovider", "--trainstab-steps=5")
    result.assert_outcomes(failed=1)
    line = "trainstab: bad_models:bidirectional: model 'bad_models:bidirectional' is not causal: changing the token *"
    result.stdout.fnmatch_lines([line])
    assert "Traceback" not in result.stdout.str()
