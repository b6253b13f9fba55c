"""The options of a stability run, and everything they resolve to: one table, one typed record.

One table names every option once. The pytest plugin registers each row as
``--trainstab-<name>`` plus the ini key ``trainstab_<name>``; the CLI as
``--<name>`` on the commands that take it. Both hand the raw values (text
from flags and ini files; int, float, bool or list from a TOML file) of their
flags and of the one pytest configuration (:mod:`trainstab.run.inifile`) to
:func:`options_from`, which returns one typed :class:`RunOptions`, so the two
front ends accept the same values and reject bad ones with the same message.

A row states where its value goes (``sets``): a field of the battery's
:class:`~trainstab.checks.battery.Thresholds`, of the scaling checks'
:class:`~trainstab.checks.scaling.ScalingThresholds` or of the ladders'
:class:`~trainstab.checks.scaling.ScalingConfig`. Their defaults are stated there,
once; an option left unset keeps them. What the options resolve to lives here
too: the model under test, its sweep, the bounds, the ladders and the
baseline policy. Imports neither torch nor pytest.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from trainstab.checks.battery import BATTERY, Thresholds
from trainstab.checks.registry import sweep_check_names
from trainstab.checks.scaling import ScalingConfig, ScalingThresholds
from trainstab.core.config import (
    BUILT_IN_OPTIMIZERS,
    DEVICE_PATTERN,
    EXECUTORS,
    PRECISIONS,
    PROFILES,
    Executor,
    Precision,
    SweepConfig,
    TimeLimits,
    TrainConfig,
    validate,
)
from trainstab.core.errors import TrainstabError
from trainstab.core.files import absolute, check_folder_writable
from trainstab.core.model_names import canonical_model_name
from trainstab.core.optimizer_table import is_optimizer
from trainstab.run.overrides import apply_overrides

if TYPE_CHECKING:  # the front ends read it (with pytest); this module only takes it
    from trainstab.run.inifile import IniFile

_Parsed = TypeVar("_Parsed")
_Item = TypeVar("_Item")

#: How each front end spells its flags: messages name the flag the user can type.
PYTEST_FLAGS = "--trainstab-"
CLI_FLAGS = "--"


class _NotAccepted(ValueError):
    """A value of a type the option never takes (a TOML boolean for a number): messages say which type it was."""

    def __init__(self, value: object) -> None:
        super().__init__(value)
        self.kind = _KINDS.get(type(value), type(value).__name__)


#: How messages name a configuration value's TOML type.
_KINDS = {bool: "a boolean", int: "an integer", float: "a float", list: "an array", dict: "a table"}


# A value reaches a parser as text (a flag, an ini file, [tool.pytest.ini_options]) or with the type a TOML
# file gives it ([tool.pytest], pytest.toml): int, float, bool, list. These take each kind the option can mean.


def _text(value: Any) -> str:
    """Text, as it stands; anything else is not accepted."""
    if not isinstance(value, str):
        raise _NotAccepted(value)
    return value


def _whole(value: Any) -> int:
    """An integer: a TOML integer or its text (not a boolean, not a float such as 1.0)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _NotAccepted(value)
    return int(value)


def _real(value: Any) -> float:
    """A number: a TOML integer or float, or its text (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _NotAccepted(value)
    return float(value)


def _items(value: Any) -> list[Any]:
    """A list option's items: a TOML array's, or the non-empty parts of comma-separated text."""
    if isinstance(value, list):
        return value
    return [part.strip() for part in _text(value).split(",") if part.strip()]


def _each(items: list[Any], parse: Callable[[Any], _Item]) -> tuple[_Item, ...]:
    """``parse`` of every item; a bad item makes the whole value bad (the message shows the whole value)."""
    try:
        return tuple(parse(item) for item in items)
    except ValueError:
        raise ValueError(items) from None


def text(value: Any) -> str:
    """Text: a file or folder name (ValueError for a TOML number, boolean or array)."""
    return _text(value)


def lr_grid(value: Any) -> tuple[float, ...]:
    """Learning rates: comma-separated text such as ``1e-3,1e-2`` or a TOML array (ValueError if none)."""
    lrs = _each(_items(value), _real)
    return _accepted(lrs, bool(lrs), value)


def size_ladder(value: Any) -> tuple[int, ...]:
    """Sizes of a ladder: comma-separated integers such as ``32,48,64`` or a TOML array (ValueError if none)."""
    sizes = _each(_items(value), _whole)
    return _accepted(sizes, bool(sizes), value)


def check_list(value: Any) -> frozenset[str]:
    """Sweep check names (the battery's, a team's), comma-separated or a TOML array; ``none`` or ``[]`` for none
    (ValueError if unknown)."""
    names = set(_each(_items(value), _text))
    if names <= {"none"} and (names or isinstance(value, list)):
        return frozenset()
    if not names or not names <= set(sweep_check_names()):
        raise ValueError(value)
    return frozenset(names)


def model_name(value: Any) -> str:
    """A model name written canonically (options sorted); a malformed one raises :class:`TrainstabError`."""
    return canonical_model_name(_text(value))


def profile(value: Any) -> str:
    """A profile name from :data:`trainstab.core.config.PROFILES` (TrainstabError otherwise, listing them)."""
    name = _text(value)
    if name not in PROFILES:
        raise TrainstabError(f"trainstab profile {name!r} is unknown; use one of {', '.join(PROFILES)}")
    return name


def device(value: Any) -> str:
    """A device: ``cpu``, ``cuda`` or ``cuda:N`` (ValueError otherwise; whether it exists is checked at training)."""
    name = _text(value)
    if not re.fullmatch(DEVICE_PATTERN, name):
        raise ValueError(value)
    return name


def precision(value: Any) -> Precision:
    """A training precision: ``fp32`` or ``bf16`` (ValueError otherwise)."""
    for known in PRECISIONS:
        if _text(value) == known:
            return known
    raise ValueError(value)


def executor(value: Any) -> Executor:
    """Where stacks train: ``local`` processes or ``ray`` tasks (ValueError otherwise)."""
    for known in EXECUTORS:
        if _text(value) == known:
            return known
    raise ValueError(value)


def number(value: float) -> str:
    """A number as a user writes it: ``0.3``, ``1e9``, ``1e-5`` (not ``1e+09``)."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{value:g}")


def optimizer(value: Any) -> str:
    """An optimizer: a built-in name or package.module:callable (ValueError otherwise)."""
    name = _text(value)
    if not is_optimizer(name):
        raise ValueError(value)
    return name


def _accepted(parsed: _Parsed, ok: bool, value: Any) -> _Parsed:
    """``parsed`` when ``ok``, else the ValueError every parser of this table raises for a bad value."""
    if not ok:
        raise ValueError(value)
    return parsed


def positive(value: Any) -> float:
    """A finite number above 0 (ValueError otherwise: NaN, inf, 0 and negatives are not bounds)."""
    number = _real(value)
    return _accepted(number, math.isfinite(number) and number > 0, value)


def non_negative(value: Any) -> float:
    """A finite number, 0 or above (ValueError otherwise)."""
    number = _real(value)
    return _accepted(number, math.isfinite(number) and number >= 0, value)


def seed(value: Any) -> int:
    """A seed: an integer from 0 to 2**63-1, what torch.manual_seed takes (ValueError otherwise)."""
    number = _whole(value)
    return _accepted(number, 0 <= number <= 2**63 - 1, value)


def steps(value: Any) -> int:
    """A positive number of optimizer steps, at most a million (ValueError otherwise)."""
    number = _whole(value)
    return _accepted(number, 0 < number <= 1_000_000, value)


def positive_int(value: Any) -> int:
    """A whole number above 0 (ValueError otherwise)."""
    number = _whole(value)
    return _accepted(number, number > 0, value)


def decades(value: Any) -> float:
    """A number of decades of parameters, above 0 and at most 10 (ValueError otherwise)."""
    number = _real(value)
    return _accepted(number, 0 < number <= 10, value)


def pattern_list(value: Any) -> tuple[str, ...]:
    """Shell-style patterns of parameter names, comma-separated (``*.k_norm.bias,pos_emb``) or a TOML array."""
    patterns = _each(_items(value), _text)
    return _accepted(patterns, bool(patterns) or isinstance(value, list), value)


#: What each parser accepts, in words: the "expected ..." of every message about a bad value.
_EXPECTED = {
    "text": "text",
    "int": "an integer",
    "float": "a number",
    "lr_grid": "comma-separated numbers such as 1e-3,1e-2",
    "size_ladder": "comma-separated integers such as 32,48,64",
    "check_list": f"none or check names from {', '.join(BATTERY)} (or a team's registered check)",
    "pattern_list": "comma-separated parameter name patterns like *.k_norm.bias",
    "decades": "a number of decades above 0 and at most 10, e.g. 2",
    "positive": "a finite number above 0",
    "non_negative": "a finite number, 0 or above",
    "seed": "an integer from 0 to 2**63-1",
    "steps": "a whole number of steps from 1 to 1000000",
    "positive_int": "a whole number above 0",
    "optimizer": f"one of {', '.join(BUILT_IN_OPTIMIZERS)}, one a team registered, or package.module:callable",
    "device": "cpu, cuda or cuda:N (N the GPU's index)",
    "precision": f"{' or '.join(PRECISIONS)}",
    "executor": f"{' or '.join(EXECUTORS)}",
    "model_name": "a model name: reference, hf:<type> or package.module:factory",
    "profile": f"one of {', '.join(PROFILES)}",
}
#: The list options' TOML form, which a configuration file may use instead of comma-separated text.
_ARRAY_EXAMPLES = {
    "lr_grid": "[1e-3, 1e-2]",
    "size_ladder": "[32, 48, 64]",
    "check_list": '["log_z"]',
    "pattern_list": '["*.k_norm.bias"]',
}


def expected(parse: Callable[[Any], Any], in_a_file: bool = False) -> str:
    """What a parser of this table accepts, in words ("a finite number above 0"); a file may also hold arrays."""
    words = _EXPECTED.get(parse.__name__, parse.__name__)
    example = _ARRAY_EXAMPLES.get(parse.__name__)
    return f"{words}, or a TOML array such as {example}" if in_a_file and example else words


def _written(value: Any) -> str:
    """A value as messages show it: text quoted, TOML's other values as TOML writes them (``true``, ``[1, 2]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_written(item) for item in value) + "]"
    return repr(value)


#: The records an option's value may set, by the prefix its ``sets`` entries use.
_TARGETS: dict[str, type[Any]] = {
    "battery": Thresholds,
    "scaling": ScalingThresholds,
    "ladders": ScalingConfig,
    "train": TrainConfig,
    "sweep": SweepConfig,
    "limits": TimeLimits,
}


@dataclass(frozen=True)
class Option:
    """One option of a stability run: a row of :data:`OPTIONS`."""

    name: str  # --trainstab-<name> in pytest, --<name> in the CLI
    parse: Callable[[Any], Any]  # text, or a TOML value (int, float, bool, list) -> typed value; ValueError if bad
    help: str
    sets: tuple[str, ...] = ()  # "battery.max_lr": the fields it sets besides RunOptions.<field> (their defaults)

    @property
    def field(self) -> str:
        """The :class:`RunOptions` field it fills (``max_lr``)."""
        return self.name.replace("-", "_")

    @property
    def key(self) -> str:
        """The ini key (``trainstab_max_lr``)."""
        return "trainstab_" + self.field

    @property
    def default(self) -> Any:
        """Its default: the RunOptions field's, or else the first field it sets (None: off, or per profile)."""
        own = RunOptions.__dataclass_fields__[self.field].default
        if own is not None or not self.sets:
            return own
        return _default_of(self.sets[0])

    def described(self) -> str:
        """The help text with the default (each record's, where they differ), as a user would type it."""
        if self.default is None:
            return self.help
        defaults = {target: _shown(_default_of(target)) for target in self.sets} or {self.field: _shown(self.default)}
        first, *others = defaults.items()
        shown = first[1] + "".join(
            f"; {_RECORD_NAMES[target.split('.')[0]]}: {value}" for target, value in others if value != first[1]
        )
        return f"{self.help} (default: {shown})"


def _default_of(target: str) -> Any:
    """The default of ``record.field`` (``"battery.max_lr"``): stated once, in that record."""
    record, name = target.split(".")
    return getattr(_TARGETS[record](), name)


def _shown(value: Any) -> str:
    """A default as a user would type it: ``0.3``, ``1e9``, ``32,48,64``, ``none``."""
    if isinstance(value, frozenset):
        return ",".join(sorted(value)) or "none"
    if isinstance(value, tuple | list):
        return ",".join(number(x) if isinstance(x, float) else str(x) for x in value) or "none"
    return number(value) if isinstance(value, float) else str(value)


#: How help texts name the records an option sets, where their defaults differ.
_RECORD_NAMES = {
    "battery": "the battery",
    "scaling": "the scaling checks",
    "ladders": "the ladders",
    "train": "training",
    "sweep": "the sweep",
    "limits": "the time limits",
}


OPTIONS: tuple[Option, ...] = (
    Option("model", model_name, "model to check: reference, hf:<type> or package.module:factory[k=v]"),
    Option("profile", profile, "steps and LR grid preset: quick, default or thorough"),
    Option("seed", seed, "seed of init and data order", ("train.seed",)),
    Option("steps", steps, "optimizer steps per run (default: the profile's)"),
    Option("lrs", lr_grid, "comma-separated LR grid (default: the profile's)"),
    Option("corpus", text, "token file (.npy or uint16 .bin) instead of the bundled corpus"),
    Option("device", device, "device to train on: cpu, cuda or cuda:N", ("train.device",)),
    Option(
        "precision",
        precision,
        "fp32, or bf16 autocast of the forward (probes and loss stay fp32)",
        ("train.precision",),
    ),
    Option(
        "executor",
        executor,
        "where the stacks train: local processes, or ray tasks (RAY_ADDRESS picks the cluster)",
        ("sweep.executor",),
    ),
    Option(
        "optimizer",
        optimizer,
        f"{', '.join(BUILT_IN_OPTIMIZERS)}, a team's registered name or package.module:callable",
        ("train.optimizer",),
    ),
    Option("max-lr", positive, "checks look at LRs up to this", ("battery.max_lr", "scaling.max_lr")),
    Option("attention-logit-bound", positive, "max attention logit", ("battery.attention_logit",)),
    Option("log-z-bound", positive, "max |log Z|", ("battery.log_z",)),
    Option(
        "lr-sensitivity-bound",
        positive,
        "max LR sensitivity: gross problems; baselines gate the rest",
        ("battery.lr_sensitivity",),
    ),
    Option(
        "sensitivity-slope-bound",
        non_negative,
        "max growth of LR sensitivity per decade of parameters along a ladder (sensitivity_scaling)",
        ("scaling.sensitivity_slope",),
    ),
    Option(
        "grad-rms-over-eps",
        non_negative,
        "min gradient RMS / AdamW eps",
        ("battery.grad_rms_over_eps", "scaling.grad_rms_over_eps"),
    ),
    Option("spike-score-bound", non_negative, "max loss spike score", ("battery.spike_score",)),
    Option(
        "report-only",
        check_list,
        "checks shown, reported and baselined that never fail a test (none: all fail)",
        ("battery.report_only",),
    ),
    Option(
        "ignore-params",
        pattern_list,
        "parameter tensors grad_rms_vs_eps and parameters_move leave out, by the model's own names: patterns like "
        "*.k_norm.bias,pos_emb",
        ("battery.ignore_params",),
    ),
    Option("report", text, "write a JSON, plots and an HTML page of every check to this folder"),
    Option("baselines", text, "folder of committed baselines to compare with (off when unset)"),
    Option(
        "cache", text, "folder of sweeps kept between runs: an unchanged model is read, not trained (off when unset)"
    ),
    Option("target-params", positive, "size the scaling forecasts extrapolate to", ("scaling.target_parameters",)),
    Option(
        "max-extrapolation",
        decades,
        "decades past the largest size measured that the attention forecast may extrapolate",
        ("scaling.max_extrapolation_decades",),
    ),
    Option("widths", size_ladder, "width ladder of the scaling checks", ("ladders.widths",)),
    Option(
        "z-loss-pull",
        non_negative,
        "z_loss_effect: least mean pull of |log Z| toward 0, nats",
        ("scaling.z_loss_pull",),
    ),
    Option(
        "z-loss-cost", non_negative, "z_loss_effect: most final loss z-loss may cost, nats", ("scaling.z_loss_cost",)
    ),
    Option("depths", size_ladder, "depth ladder of the scaling checks", ("ladders.depths",)),
    Option(
        "slow-step-seconds",
        positive,
        "print a line when no training step has finished for this long, progress off or on",
        ("limits.slow_step_seconds",),
    ),
    Option(
        "time-limit-seconds",
        positive,
        "stop training that runs longer than this (a sweep, with the ladder rungs trained beside it): "
        "inconclusive, exit 4 (off when unset); worker processes are ended at once, training in the run's own "
        "process only between steps; not with the ray executor",
        ("limits.time_limit_seconds",),
    ),
)
OPTION_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run, typed; None: the library default (:attr:`Option.default` says which)."""

    model: str = "reference"
    profile: str = "default"
    seed: int | None = None  # None: --set seed=N, else TrainConfig's (run_seed says which)
    steps: int | None = None
    optimizer: str | None = None  # None: --set optimizer=..., else TrainConfig's (adamw)
    lrs: tuple[float, ...] | None = None
    corpus: str | None = None
    device: str | None = None  # None: --set device=..., else TrainConfig's (cpu)
    precision: Precision | None = None  # None: --set precision=..., else TrainConfig's (fp32)
    executor: Executor | None = None  # None: SweepConfig's (local)
    max_lr: float | None = None
    attention_logit_bound: float | None = None
    log_z_bound: float | None = None
    lr_sensitivity_bound: float | None = None
    sensitivity_slope_bound: float | None = None
    grad_rms_over_eps: float | None = None
    spike_score_bound: float | None = None
    report_only: frozenset[str] | None = None
    ignore_params: tuple[str, ...] | None = None
    report: str | None = None
    baselines: str | None = None  # resolved by the front end: relative to pytest's rootdir or the config file
    cache: str | None = None  # the persistent sweep cache (trainstab.cache.sweep_cache); resolved as baselines are
    target_params: float | None = None
    max_extrapolation: float | None = None
    widths: tuple[int, ...] | None = None
    z_loss_pull: float | None = None
    z_loss_cost: float | None = None
    depths: tuple[int, ...] | None = None
    slow_step_seconds: float | None = None
    time_limit_seconds: float | None = None  # None: no limit
    overrides: tuple[str, ...] = ()  # --set / trainstab_set: key=value, in order
    update_baseline: bool = False  # rewrite missing, worse or incomparable baselines, and pass
    regen_all: bool = False  # rewrite every baseline, and pass
    flags: str = PYTEST_FLAGS  # how the front end that made these spells its flags, for hints in messages

    def flag(self, name: str) -> str:
        """The flag ``name`` as this run's front end spells it (``--trainstab-max-lr`` or ``--max-lr``)."""
        return self.flags + name

    def overrides_shown(self) -> str:
        """The ``--set`` overrides as the user wrote them, for a run's header: `` --set init_scale=10`` ("" if none).

        A model label leaves them out (a project-wide override keeps its baselines' folder), so the header names
        them: what was gated is the model with them.
        """
        return "".join(f" {self.flag('set')} {override}" for override in self.overrides)


def parse_options(
    raw: Mapping[str, tuple[str, Any]],
    overrides: list[str] | tuple[str, ...] = (),
    overrides_source: str = "trainstab_set / --trainstab-set",
    flags: str = PYTEST_FLAGS,
) -> RunOptions:
    """Typed options from ``{option name: (where it came from, raw value)}`` and the ``key=value`` overrides.

    A raw value is text (a flag, an ini file) or a TOML file's int, float, bool or list. Missing or empty
    values take the option's default. Raises :class:`TrainstabError` naming the option (as the user wrote
    it) and what was expected.
    """
    values: dict[str, Any] = {}
    for option in OPTIONS:
        source, value = raw.get(option.name, (option.key, None))
        on_command_line = source.startswith("--")
        if value == "" and on_command_line:  # --lrs '' on a command line: a mistake, not "the default"
            raise TrainstabError(f"{source} is empty; give a value ({expected(option.parse)}) or leave the flag out")
        if value is None or value == "":
            continue  # the default applies
        try:
            values[option.field] = option.parse(value)
        except ValueError as error:
            wrong_type = f", not {error.kind}" if isinstance(error, _NotAccepted) else ""
            raise TrainstabError(
                f"{source}={_written(value)}: expected {expected(option.parse, not on_command_line)}{wrong_type}"
            ) from None
    if values.get("executor") == "ray" and values.get("time_limit_seconds") is not None:
        # Refused, not ignored: a run given a limit counts on it ending, and Ray's tasks are not watched (yet).
        source, value = raw["time-limit-seconds"]
        raise TrainstabError(
            f"{source}={_written(value)}: the time limit does not apply on the Ray executor "
            f"({raw['executor'][0]}=ray) yet, so training there would not stop at it; leave it out, or train on "
            "the local executor"
        )
    try:  # checked now, not in every test
        apply_overrides(SweepConfig(), overrides)
    except TrainstabError as error:
        raise TrainstabError(f"{overrides_source}: {error}") from None
    return RunOptions(**values, overrides=tuple(overrides), flags=flags)


def options_from(
    given: Mapping[str, Any], ini: IniFile, set_flags: Sequence[str] = (), flags: str = PYTEST_FLAGS
) -> RunOptions:
    """A front end's options: its flags, else its pytest configuration's keys, parsed by the one table.

    ``given`` maps option names to the flag's value (None: not given); ``set_flags`` are the ``--set`` /
    ``--trainstab-set`` lines, applied after the configuration's ``trainstab_set`` lines. Folders are left as
    written: each front end says what a relative one is relative to.
    """
    raw: dict[str, tuple[str, Any]] = {}
    for option in OPTIONS:
        flag = given.get(option.name)
        if flag is None and option.key in ini.values:
            raw[option.name] = (ini.source(option.key), ini.values[option.key])
        else:
            raw[option.name] = (flags + option.name, flag)
    set_source = f"{ini.set_source} / {flags}set" if ini.overrides else f"{flags}set"
    return parse_options(raw, [*ini.overrides, *set_flags], set_source, flags)


#: The options that name a file or folder: each front end makes them absolute before any model's code runs.
PATH_OPTIONS = ("corpus", "report", "baselines", "cache")


def with_absolute_paths(options: RunOptions, folder: Path, bases: Mapping[str, Path] | None = None) -> RunOptions:
    """``options`` with every file and folder (:data:`PATH_OPTIONS`) absolute: a relative one is relative to
    ``folder`` (the invocation folder), or to its entry of ``bases`` (pytest's rootdir for the baselines).

    A model module may change the working folder when it is imported; paths made absolute first still name
    what the user meant.
    """
    bases = bases or {}

    def resolved(name: str) -> str | None:
        value = getattr(options, name)
        return str(absolute(value, bases.get(name, folder))) if value is not None else None

    return dataclasses.replace(
        options,
        corpus=resolved("corpus"),
        report=resolved("report"),
        baselines=resolved("baselines"),
        cache=resolved("cache"),
    )


def run_seed(options: RunOptions) -> int:
    """The seed a run trains with: ``seed``, else a ``--set seed=N``, else TrainConfig's (0)."""
    if options.seed is not None:
        return options.seed
    return apply_overrides(SweepConfig(), options.overrides).train.seed


def _settings(options: RunOptions, record: str) -> dict[str, Any]:
    """The fields of ``record`` ("battery", "scaling", "ladders") that the run's options set."""
    settings = {}
    for option in OPTIONS:
        value = getattr(options, option.field)
        for target in option.sets:
            prefix, name = target.split(".")
            if prefix == record and value is not None:
                settings[name] = value
    return settings


def thresholds(options: RunOptions) -> Thresholds:
    """The battery's bounds with the run's options applied."""
    return Thresholds(**_settings(options, "battery"), flags=options.flags)


def scaling_thresholds(options: RunOptions) -> ScalingThresholds:
    """The scaling checks' bounds with the run's options applied (shared bounds are set by the same options)."""
    return ScalingThresholds(**_settings(options, "scaling"), flags=options.flags)


def time_limits(options: RunOptions) -> TimeLimits:
    """How long the run's training may go without a step before it says so, and how long it may train."""
    return TimeLimits(**_settings(options, "limits"), flags=options.flags)


def scaling_plan(options: RunOptions) -> ScalingConfig:
    """The ladders of the scaling checks, with the run's ``widths`` and ``depths``."""
    return ScalingConfig(**_settings(options, "ladders"))


@dataclass(frozen=True)
class ModelUnderTest:
    """A model to check: its name, its factory's keyword options and ``key=value`` overrides of the run's config.

    ``ModelUnderTest("mypkg.models:build", options={"qk_norm": False})`` checks ``build(size, qk_norm=False)``,
    the same model as the name ``"mypkg.models:build[qk_norm=false]"``; options given here win over
    options written in the name.
    """

    name: str | None = None  # None: the run's --trainstab-model
    overrides: tuple[str, ...] = ()  # e.g. ("z_loss=0",): training keys, and the reference's switches
    id: str | None = None  # the test id; default: the model's canonical name plus overrides
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)  # the factory's keywords

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", dict(self.options))  # a private copy: the caller may mutate theirs
        if self.name is not None:
            canonical_model_name(self.name, self.options)  # a malformed name or option fails at collection

    def model_name(self, run: RunOptions) -> str:
        """The canonical model this checks, the run's --trainstab-model standing in for a missing name."""
        return canonical_model_name(self.name or run.model, self.options)

    def __str__(self) -> str:
        if self.id is not None:
            return self.id
        named = self.name or "default-model"  # the run's model, not known here
        # Overrides as "+key=value": brackets belong to the model's own options, and a label pasted back as a
        # model name must not turn an override into an option.
        return canonical_model_name(named, self.options) + "".join(f"+{o}" for o in self.overrides)

    def label(self, run: RunOptions) -> str:
        """The model's name in reports and baseline folders: its id, or the resolved model and overrides."""
        if self.id is not None or self.name is not None:
            return str(self)
        return str(dataclasses.replace(self, name=self.model_name(run), options={}))


def sweep_config(options: RunOptions, target: ModelUnderTest) -> SweepConfig:
    """The sweep a model is checked with: the run's options, then the model's own overrides.

    Precedence: the profile, then ``--set`` / ``trainstab_set``, then the model's own overrides, then the
    explicit ``seed``, ``steps``, ``lrs`` and ``corpus`` options.
    """
    profile_steps, profile_lrs = PROFILES[options.profile]
    base = SweepConfig(model_name=target.model_name(options), lrs=profile_lrs)
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=profile_steps))
    sweep = apply_overrides(base, [*options.overrides, *target.overrides])
    seed = options.seed if options.seed is not None else sweep.train.seed
    train = dataclasses.replace(
        sweep.train,
        seed=seed,
        steps=options.steps or sweep.train.steps,
        optimizer=options.optimizer or sweep.train.optimizer,
        device=options.device or sweep.train.device,
        precision=options.precision or sweep.train.precision,
    )
    sweep = dataclasses.replace(
        sweep,
        train=train,
        lrs=options.lrs or sweep.lrs,
        corpus=options.corpus,
        executor=options.executor or sweep.executor,
    )
    validate(sweep)
    return sweep


@dataclass(frozen=True)
class BaselinePolicy:
    """Whether and how a run compares with (and writes) baselines."""

    folder: Path | None  # None: baselines off
    update_failing: bool = False  # rewrite missing, worse or incomparable baselines, and pass
    regen_all: bool = False  # rewrite every baseline, and pass
    flags: str = PYTEST_FLAGS  # how messages spell the rewrite flags

    @property
    def rewriting(self) -> bool:
        """Either flag is on."""
        return self.update_failing or self.regen_all


def policy_from(options: RunOptions) -> BaselinePolicy:
    """The baseline policy of a run; a rewrite flag without a usable baseline folder is an error."""
    folder = options.baselines
    rewriting = options.update_baseline or options.regen_all
    flag = options.flag("update-baseline" if options.update_baseline else "regen-all")
    if folder is None and rewriting:
        raise TrainstabError(
            f"{flag} needs a baseline folder: in pytest set trainstab_baselines = <folder> in the ini file or pass "
            "--trainstab-baselines=<folder>; with trainstab check pass --baselines <folder>"
        )
    if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
        raise TrainstabError(
            f"the baseline folder {folder} (trainstab_baselines / {options.flag('baselines')}) is a file; give a folder"
        )
    if folder is not None and rewriting:  # they will write: find out now, not after training
        check_folder_writable(Path(folder), f"{flag} rewrites baselines, but the baseline folder")
    return BaselinePolicy(
        Path(folder) if folder is not None else None, options.update_baseline, options.regen_all, options.flags
    )
