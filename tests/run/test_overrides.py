from pathlib import Path

import pytest

from trainstab.core.config import SweepConfig, validate
from trainstab.core.errors import TrainstabError
from trainstab.run.overrides import apply_overrides


def test_every_type_of_field_is_parsed():
    config = apply_overrides(
        SweepConfig(),
        ["qk_layernorm=false", "width=64", "z_loss=0", "norm=rmsnorm", "weight_decay=none", "eps=1e-15"],
    )
    assert config.model.qk_layernorm is False
    assert config.model.width == 64
    assert config.train.z_loss == 0.0
    assert config.model.norm == "rmsnorm"
    assert config.train.weight_decay is None
    assert config.train.eps == 1e-15


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("nope=1", "unknown --set key 'nope'"),
        ("width=wide", "expected an integer"),
        ("z_loss=high", "expected a number"),
        ("qk_layernorm=perhaps", "expected true or false"),
        ("norm=batchnorm", "expected one of layernorm, rmsnorm"),
        ("width", "not of the form key=value"),
    ],
)
def test_bad_assignments_say_what_was_wrong(assignment, message):
    with pytest.raises(TrainstabError, match=message):
        apply_overrides(SweepConfig(), [assignment])


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("heads=3", "not divisible by heads=3"),
        ("steps=0", "steps=0 must be a positive integer"),
        ("warmup_fraction=1.5", "warmup_fraction"),
        ("beta2=1", "beta2"),
    ],
)
def test_inconsistent_configs_are_rejected_by_validate(assignment, message):
    with pytest.raises(TrainstabError, match=message):
        validate(apply_overrides(SweepConfig(), [assignment]))


def test_non_positive_learning_rates_are_rejected():
    with pytest.raises(TrainstabError, match="must be > 0"):
        validate(SweepConfig(lrs=(1e-3, -1.0)))


@pytest.mark.parametrize("model", ["mypkg.models:build", "hf:llama"])
def test_a_built_in_model_key_for_another_model_is_refused_with_how_to_express_it(model):
    config = apply_overrides(SweepConfig(model_name=model), ["qk_layernorm=false", "init_scale=3", "width=64"])
    with pytest.raises(TrainstabError) as error:
        validate(config)
    message = str(error.value)
    assert message.startswith("qk_layernorm=False, init_scale=3.0: built-in-model setting(s) of the reference")
    how = "config fields, e.g. hf:llama[tie_word_embeddings=true]" if model.startswith("hf:") else "[qk_norm=false]"
    assert model in message and how in message and "width" in message and "\n" not in message


def test_training_and_size_keys_apply_to_every_model():
    assignments = ["eps=1e-15", "warmup_fraction=0.3", "z_loss=0", "width=64", "heads=4", "context_length=32"]
    validate(apply_overrides(SweepConfig(model_name="mypkg.models:build"), assignments))
    validate(apply_overrides(SweepConfig(), [*assignments, "qk_layernorm=false"]))  # the reference takes all


def test_a_user_models_baseline_recipe_records_only_what_applies_to_it():
    from trainstab.core.config import REFERENCE_ONLY_KEYS
    from trainstab.core.results import SweepResult
    from trainstab.gate.baseline import describe_config

    def recipe(name):
        return describe_config(SweepResult(SweepConfig(model_name=name), (), 0.0, 0.0, {}, 0.0))[1]

    assert not {f"model.{key}" for key in REFERENCE_ONLY_KEYS} & set(recipe("mypkg.models:build"))
    assert recipe("reference")["model.qk_layernorm"] is True


def test_mu_param_advice_names_the_set_key_for_the_reference_only():
    from trainstab.checks.scaling import mup_advice

    assert "(--set parameterization=mup_simple)" in mup_advice("reference", "--")
    assert "(--trainstab-set parameterization=mup_simple)" in mup_advice("reference")
    assert "--set" not in mup_advice("mypkg.models:build") and "in your model" in mup_advice("mypkg.models:build")


def test_a_user_models_older_baseline_recipe_with_reference_keys_is_not_a_change():
    from trainstab.gate.baseline import Baseline, recipe_changes

    old = Baseline(Path("b.json"), {"recipe": {"model.qk_layernorm": True, "train.eps": 1e-8}})
    assert recipe_changes(old, {"recipe": {"train.eps": 1e-8}}) == []
    assert recipe_changes(old, {"recipe": {"train.eps": 1e-15}}) == ["train.eps: baseline 1e-08, this run 1e-15"]
