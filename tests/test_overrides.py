import pytest

from trainstab.config import SweepConfig, validate
from trainstab.errors import TrainstabError
from trainstab.overrides import apply_overrides


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
