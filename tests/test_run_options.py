"""One option table, one typed RunOptions: what each option resolves to, and in which order they win."""

import dataclasses

import pytest

from trainstab.checks.battery import Thresholds
from trainstab.checks.scaling import ScalingConfig, ScalingThresholds
from trainstab.core.config import PROFILES
from trainstab.core.errors import TrainstabError
from trainstab.run.options import (
    CLI_FLAGS,
    OPTION_BY_NAME,
    ModelUnderTest,
    RunOptions,
    parse_options,
    run_seed,
    scaling_plan,
    scaling_thresholds,
    sweep_config,
    thresholds,
)

REFERENCE = ModelUnderTest("reference")


def test_the_profile_then_set_then_the_models_overrides_then_explicit_options_win():
    quick_steps, quick_lrs = PROFILES["quick"]
    profile_only = sweep_config(RunOptions(profile="quick"), REFERENCE)
    assert (profile_only.train.steps, profile_only.lrs) == (quick_steps, quick_lrs)
    with_set = sweep_config(RunOptions(profile="quick", overrides=("steps=30", "z_loss=0")), REFERENCE)
    assert (with_set.train.steps, with_set.train.z_loss) == (30, 0.0)
    model = ModelUnderTest("reference", ("z_loss=0.01",))
    assert sweep_config(RunOptions(overrides=("z_loss=0",)), model).train.z_loss == 0.01
    explicit = RunOptions(profile="quick", overrides=("steps=30",), steps=12, lrs=(0.1,), corpus="c.npy")
    resolved = sweep_config(explicit, REFERENCE)
    assert (resolved.train.steps, resolved.lrs, resolved.corpus) == (12, (0.1,), "c.npy")


def test_the_seed_is_the_explicit_one_else_a_set_seed_else_zero():
    assert sweep_config(RunOptions(), REFERENCE).train.seed == run_seed(RunOptions()) == 0
    with_set = RunOptions(overrides=("seed=5",))
    assert sweep_config(with_set, REFERENCE).train.seed == run_seed(with_set) == 5
    explicit = RunOptions(seed=3, overrides=("seed=5",))
    assert sweep_config(explicit, REFERENCE).train.seed == run_seed(explicit) == 3


def test_an_unset_bound_keeps_the_records_default_and_a_set_one_reaches_every_record_it_names():
    assert thresholds(RunOptions()) == Thresholds()
    assert scaling_thresholds(RunOptions()) == ScalingThresholds()
    assert scaling_plan(RunOptions()) == ScalingConfig()
    options = RunOptions(max_lr=0.1, lr_sensitivity_bound=0.5, sensitivity_slope_bound=0.2, widths=(16, 32, 64))
    assert (thresholds(options).max_lr, scaling_thresholds(options).max_lr) == (0.1, 0.1)
    assert (thresholds(options).lr_sensitivity, scaling_thresholds(options).sensitivity_slope) == (0.5, 0.2)
    assert scaling_plan(options).widths == (16, 32, 64)


def test_help_shows_each_records_default_where_they_differ():
    assert OPTION_BY_NAME["max-lr"].described().endswith("(default: 0.3)")
    assert OPTION_BY_NAME["lr-sensitivity-bound"].described().endswith("(default: 1)")
    assert OPTION_BY_NAME["sensitivity-slope-bound"].described().endswith("(default: 0.25)")
    # An option that sets fields of two records shows both defaults where they differ.
    both = dataclasses.replace(
        OPTION_BY_NAME["lr-sensitivity-bound"], sets=("battery.lr_sensitivity", "scaling.sensitivity_slope")
    )
    assert both.described().endswith("(default: 1; the scaling checks: 0.25)")
    assert OPTION_BY_NAME["target-params"].described().endswith("(default: 1e9)")


def test_messages_name_the_flags_of_the_front_end_that_parsed_them():
    with pytest.raises(TrainstabError, match=r"^--max-lr='x'"):
        parse_options({"max-lr": ("--max-lr", "x")}, flags=CLI_FLAGS)
    cli = parse_options({}, flags=CLI_FLAGS)
    assert thresholds(cli).flags == "--" and cli.flag("update-baseline") == "--update-baseline"
    assert RunOptions().flag("update-baseline") == "--trainstab-update-baseline"
