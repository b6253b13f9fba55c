"""A user factory's keyword options: ``build(size, **options)``, named as ``model[key=value]``."""

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainstab import TrainstabError
from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig, validate
from trainstab.core.model_names import canonical_model_name, split_model_name
from trainstab.core.results import SweepResult
from trainstab.explore.fuzz import evaluate
from trainstab.explore.strategies import FuzzPoint, stability_region
from trainstab.run.options import ModelUnderTest, RunOptions, sweep_config
from trainstab.train.models import build_stack
from trainstab.train.sweep import run_sweep

SMALL = ModelConfig(width=16, heads=2, depth=2, context_length=16)


def test_options_are_parsed_typed_and_written_one_way():
    assert split_model_name("pkg.mod:build[qk_norm=false, init_scale=2.5,n=3,act=gelu,x=none]") == (
        "pkg.mod:build",
        {"qk_norm": False, "init_scale": 2.5, "n": 3, "act": "gelu", "x": None},
    )
    assert canonical_model_name("m:b[z=1,a=true]") == canonical_model_name("m:b[a=true, z=1]") == "m:b[a=true,z=1]"
    assert canonical_model_name("m:b[a=1]", {"a": 2.0, "b": False}) == "m:b[a=2.0,b=false]"  # given options win
    assert canonical_model_name("m:b[]") == "m:b" == SweepConfig(model_name="m:b[]").model_name
    tied = "hf:llama[tie_word_embeddings=true]"
    assert SweepConfig(model_name="hf:llama[tie_word_embeddings=True]").model_name == tied


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("m:b[qk_norm=false", "one pair of brackets at the end"),
        ("m:b[a=1][b=2]", "one pair of brackets at the end"),
        ("m:b]", "']' without '['"),
        ("m:b[qk_norm]", "is not key=value"),
        ("m:b[1x=2]", "is not key=value"),
        ("m:b[a=1,a=2]", "sets option 'a' twice"),
        # A newline would print a spoofed line of its own in the header ("model=m:b[note=a" / "PASS all]").
        ("m:b[note=a\nPASS all]", "holds a control character"),
        ("m:b\tx", "holds a control character"),
    ],
)
def test_a_malformed_model_name_says_how_to_write_options(name, message):
    with pytest.raises(TrainstabError, match=re.escape(message)):
        SweepConfig(model_name=name)


def test_text_a_name_cannot_carry_is_refused():
    with pytest.raises(TrainstabError, match="would not read back"):
        canonical_model_name("m:b", {"act": "a,b"})
    with pytest.raises(TrainstabError, match="would not read back"):
        canonical_model_name("m:b", {"width": "2"})  # the text "2" would come back as the number 2


def test_the_reference_takes_no_options_and_says_which_set_keys_to_use():
    with pytest.raises(TrainstabError, match=r"reference takes no \[options\].*--set qk_layernorm=false"):
        validate(SweepConfig(model_name="reference[qk_layernorm=false]"))


def test_options_reach_the_factory_as_keyword_arguments():
    with_norm, _ = build_stack("user_models:Tiny[qk_norm=true]", SMALL, members=1, seed=0)
    without, _ = build_stack("user_models:Tiny[qk_norm=false]", SMALL, members=1, seed=0)
    assert with_norm.__dict__["template"].qk_norm is True
    assert without.__dict__["template"].qk_norm is False
    idx = torch.randint(0, 512, (2, 16))
    assert not torch.equal(with_norm(idx), without(idx))  # the same weights, another architecture


def test_an_option_the_factory_does_not_take_is_refused_naming_those_it_does():
    with pytest.raises(TrainstabError, match=r"takes no keyword option 'qk_nrom'; its keyword options are: qk_norm\."):
        build_stack("user_models:Tiny[qk_nrom=false]", SMALL, members=1, seed=0)
    with pytest.raises(TrainstabError, match=r"its keyword options are: none \(it takes only the size\)"):
        build_stack("user_models:stable[qk_norm=false]", SMALL, members=1, seed=0)


def test_hf_options_are_config_fields():
    pytest.importorskip("transformers")
    tied, _ = build_stack("hf:llama[tie_word_embeddings=true]", SMALL, members=1, seed=0)
    template = tied.__dict__["template"]
    assert template.config.tie_word_embeddings is True
    assert template.lm_head.weight is template.model.embed_tokens.weight
    with pytest.raises(TrainstabError, match=r"LlamaConfig\).* has no field 'qk_norm'"):
        build_stack("hf:llama[qk_norm=true]", SMALL, members=1, seed=0)


def test_a_model_under_test_with_options_is_the_model_named_with_them():
    options = RunOptions(model="user_models:Tiny")
    given_here = ModelUnderTest("user_models:Tiny", options={"qk_norm": False})
    assert str(given_here) == given_here.label(options) == "user_models:Tiny[qk_norm=false]"
    assert sweep_config(options, given_here).model_name == "user_models:Tiny[qk_norm=false]"
    run_model = ModelUnderTest(options={"qk_norm": False})  # options for the run's --trainstab-model
    assert run_model.label(options) == "user_models:Tiny[qk_norm=false]"
    with pytest.raises(TrainstabError, match="twice"):
        ModelUnderTest("user_models:Tiny[a=1,a=2]")


def test_the_recipe_records_the_options_and_a_dropped_option_is_a_change():
    from trainstab.gate.baseline import Baseline, describe_config, recipe_changes

    def recipe(name):
        return describe_config(SweepResult(SweepConfig(model_name=name), (), 0.0, 0.0, {}, 0.0))[1]

    assert recipe("user_models:Tiny[qk_norm=false]")["model.options.qk_norm"] is False
    assert recipe("user_models:Tiny[qk_norm=false]")["model_name"] == "user_models:Tiny"
    assert not any(key.startswith("model.options.") for key in recipe("user_models:Tiny"))
    old = Baseline(None, {"recipe": recipe("user_models:Tiny[qk_norm=false]")})  # type: ignore[arg-type]
    assert recipe_changes(old, {"recipe": recipe("user_models:Tiny")}) == [
        "model.options.qk_norm: baseline false, this run null"
    ]


def test_a_fuzz_point_carries_options_and_its_repr_pins_it():
    point = FuzzPoint(lr=0.3, options={"qk_norm": False})
    assert eval(repr(point)) == point and "options={'qk_norm': False}" in repr(point)
    assert "options" not in repr(FuzzPoint(lr=0.3))
    assert point != FuzzPoint(lr=0.3) and hash(point) == hash(FuzzPoint(lr=0.3))  # hashable, still told apart
    assert point.model("user_models:Tiny") == "user_models:Tiny[qk_norm=false]"


@settings(max_examples=20, database=None, derandomize=True)
@given(stability_region(options={"qk_norm": (True, False), "scale": st.sampled_from([1.0, 3.0])}))
def test_a_region_draws_the_models_own_options(point):
    assert set(point.options) == {"qk_norm", "scale"}
    assert point.options["qk_norm"] in (True, False) and point.options["scale"] in (1.0, 3.0)


def test_a_region_refuses_empty_or_unnameable_options():
    with pytest.raises(TrainstabError, match="non-empty sequence"):
        stability_region(options={"qk_norm": ()})
    with pytest.raises(TrainstabError, match="not a Python identifier"):
        stability_region(options={"qk-norm": (True,)})


def test_fuzzing_an_option_trains_the_model_with_it():
    """The user's own qk-norm switch, fuzzed: the numbers move with it (they did not before options existed)."""
    base = SweepConfig(model=SMALL, train=TrainConfig(batch_size=4))
    on = evaluate(FuzzPoint(lr=0.3, batch_size=4, options={"qk_norm": True}), "user_models:Tiny", steps=20, base=base)
    off = evaluate(FuzzPoint(lr=0.3, batch_size=4, options={"qk_norm": False}), "user_models:Tiny", steps=20, base=base)
    assert off.max_attention_logit > 2 * on.max_attention_logit


def test_a_sweep_of_a_model_with_options_differs_from_its_default():
    def sweep(name):
        train = TrainConfig(steps=10, batch_size=4, probe_every=5)
        config = SweepConfig(model_name=name, model=SMALL, train=train, lrs=(0.1,), workers=1)
        return run_sweep(config).runs[0]

    assert sweep("user_models:Tiny").losses == sweep("user_models:Tiny[qk_norm=true]").losses  # the default
    assert sweep("user_models:Tiny").losses != sweep("user_models:Tiny[qk_norm=false]").losses


@pytest.mark.parametrize(("name", "message"), [("m:b[a=b=c]", "no usable value"), ("m:b[a=nan]", "no usable value")])
def test_values_a_name_cannot_hold_are_refused_when_read(name, message):
    with pytest.raises(TrainstabError, match=message):
        SweepConfig(model_name=name)


def test_every_value_of_a_fuzzed_option_is_checked_before_the_search():
    with pytest.raises(TrainstabError, match="would not read back"):
        stability_region(options={"act": ("gelu", "a,b")})


def test_a_model_option_in_the_run_options_is_written_canonically_and_a_malformed_one_refused():
    from trainstab.run.options import parse_options

    assert parse_options({"model": ("ini", "m:b[z=1, a=true]")}).model == "m:b[a=true,z=1]"
    with pytest.raises(TrainstabError, match="one pair of brackets"):
        parse_options({"model": ("ini", "m:b[x")})


def test_overrides_and_options_never_share_a_label():
    with_override = ModelUnderTest("user_models:Tiny", ("z_loss=0",))
    with_option = ModelUnderTest("user_models:Tiny", options={"qk_norm": False})
    assert str(with_override) == "user_models:Tiny+z_loss=0"
    assert str(with_option) == "user_models:Tiny[qk_norm=false]"
