"""One option table, one typed RunOptions: what each option resolves to, and in which order they win."""

import dataclasses

import pytest

from trainstab.checks.battery import Thresholds
from trainstab.checks.scaling import ScalingConfig, ScalingThresholds
from trainstab.core import values
from trainstab.core.config import PROFILES, SweepConfig, TrainConfig, validate
from trainstab.core.errors import TrainstabError
from trainstab.core.option_fields import declared_options
from trainstab.core.option_fields import option as option_field
from trainstab.core.values import MAX_SEED, MAX_STEPS
from trainstab.run.options import (
    CLI_FLAGS,
    NOT_IN_THE_TABLE,
    OPTION_BY_NAME,
    OPTIONS,
    RECORDS,
    ModelUnderTest,
    RunOptions,
    _default_of,
    _table,
    paired_rule,
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
        OPTION_BY_NAME["lr-sensitivity-bound"],
        sets=((Thresholds, "lr_sensitivity"), (ScalingThresholds, "sensitivity_slope")),
    )
    assert both.described().endswith("(default: 1; the scaling checks: 0.25)")
    assert OPTION_BY_NAME["target-params"].described().endswith("(default: 1e9)")


def test_messages_name_the_flags_of_the_front_end_that_parsed_them():
    with pytest.raises(TrainstabError, match=r"^--max-lr='x'"):
        parse_options({"max-lr": ("--max-lr", "x")}, flags=CLI_FLAGS)
    cli = parse_options({}, flags=CLI_FLAGS)
    assert thresholds(cli).flags == "--" and cli.flag("update-baseline") == "--update-baseline"
    assert RunOptions().flag("update-baseline") == "--trainstab-update-baseline"


def test_each_option_is_read_off_the_field_that_declares_it():
    # The table is RunOptions' fields, in order; each row's default is the declaring record's field default.
    table_fields = [f.name for f in dataclasses.fields(RunOptions) if f.name not in NOT_IN_THE_TABLE]
    assert [option.field for option in OPTIONS] == table_fields
    for option in OPTIONS:
        for record, name in option.sets:
            assert record in RECORDS and getattr(record(), name) == _default_of(record, name)
            assert dict(declared_options(record))[name].parse is option.parse
    assert OPTION_BY_NAME["max-lr"].sets == ((Thresholds, "max_lr"), (ScalingThresholds, "max_lr"))
    assert OPTION_BY_NAME["seed"].sets == ((TrainConfig, "seed"),)
    assert OPTION_BY_NAME["model"].sets == () and OPTION_BY_NAME["model"].default == "reference"
    # Every field declared as an option on a record is in the table.
    declared = {spec.name for record in RECORDS for _, spec in declared_options(record)}
    assert declared <= set(OPTION_BY_NAME)


@dataclasses.dataclass(frozen=True)
class _TeamBounds:
    """A record as a new check's bounds would declare them."""

    spike_score: float = option_field(0.5, "spike-score-bound", values.non_negative)  # a second record, same option
    unheld: float = option_field(1.0, "no-such-option", values.positive, "a flag RunOptions has no field for")


def test_a_second_record_joins_an_option_and_a_declaration_with_nowhere_to_go_is_refused(monkeypatch):
    monkeypatch.setitem(RECORDS, _TeamBounds, "the team's bounds")
    with pytest.raises(TypeError, match="no RunOptions field to hold them: no-such-option"):
        _table()

    @dataclasses.dataclass(frozen=True)
    class Joined:
        spike_score: float = option_field(0.5, "spike-score-bound", values.non_negative)

    monkeypatch.delitem(RECORDS, _TeamBounds)
    monkeypatch.setitem(RECORDS, Joined, "the team's bounds")
    row = {option.name: option for option in _table()}["spike-score-bound"]
    assert row.sets == ((Thresholds, "spike_score"), (Joined, "spike_score"))
    assert row.described() == "max loss spike score (default: 0; the team's bounds: 0.5)"

    @dataclasses.dataclass(frozen=True)
    class Disagreeing:
        spike_score: float = option_field(0.5, "spike-score-bound", values.positive)  # another parser

    monkeypatch.setitem(RECORDS, Disagreeing, "another record")
    with pytest.raises(TypeError, match="'spike-score-bound': declared with help 1 times and 2 parsers"):
        _table()


def test_the_step_and_seed_limits_are_stated_once_for_flags_and_set_values():
    assert values.steps(str(MAX_STEPS)) == MAX_STEPS and values.seed(str(MAX_SEED)) == MAX_SEED
    for parse, beyond in ((values.steps, MAX_STEPS + 1), (values.seed, MAX_SEED + 1)):
        with pytest.raises(ValueError):
            parse(str(beyond))
    with pytest.raises(TrainstabError, match=f"more than {MAX_STEPS:,}"):
        validate(SweepConfig(train=TrainConfig(steps=MAX_STEPS + 1)))
    with pytest.raises(TrainstabError, match="seed="):
        validate(SweepConfig(train=TrainConfig(seed=MAX_SEED + 1)))
    with pytest.raises(TrainstabError, match=r"^--trainstab-steps='1000001': expected a whole number of steps"):
        parse_options({"steps": ("--trainstab-steps", str(MAX_STEPS + 1))})


def test_a_run_option_field_that_no_one_declares_is_named_with_the_fix(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Widened(RunOptions):
        undeclared: float | None = None

    monkeypatch.setattr("trainstab.run.options.RunOptions", Widened)
    with pytest.raises(TypeError, match=r"RunOptions.undeclared is no option: declare it with option\(\)"):
        _table()


def test_against_comes_from_a_flag_or_the_ini_key_and_its_seeds_are_at_least_three():
    options = parse_options({"against": ("trainstab_against", "main"), "against-seeds": ("--against-seeds", "4")})
    assert options.against == "main" and paired_rule(options).seeds == 4
    assert parse_options({}).against is None and paired_rule(parse_options({})).seeds == 3
    with pytest.raises(
        TrainstabError, match=r"--trainstab-against-seeds='2': expected a whole number of seeds, at least 3"
    ):
        parse_options({"against-seeds": ("--trainstab-against-seeds", "2")})
    assert OPTION_BY_NAME["against"].bare == "merge-base"  # the flag alone: the merge base
