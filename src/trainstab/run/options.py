"""The options of a stability run, and everything they resolve to: one table, one typed record.

Each option is declared once, on the field of the record its value sets
(:func:`trainstab.core.option_fields.option`): the battery's bounds on
:class:`~trainstab.checks.battery.Thresholds`, the scaling checks' on
:class:`~trainstab.checks.scaling.ScalingThresholds` and
:class:`~trainstab.checks.scaling.ScalingConfig`, the training ones on
:class:`~trainstab.core.config.TrainConfig` and
:class:`~trainstab.core.config.SweepConfig`, the time limits on
:class:`~trainstab.core.config.TimeLimits`, and what belongs to a run alone
(the model, the profile, the folders) on :class:`RunOptions`. The table
:data:`OPTIONS` is read off those fields, in the order of :class:`RunOptions`,
which holds one typed value per option. The pytest plugin registers each row
as ``--trainstab-<name>`` plus the ini key ``trainstab_<name>``; the CLI as
``--<name>`` on the commands that take it. Both hand the raw values (text
from flags and ini files; int, float, bool or list from a TOML file) of their
flags and of the one pytest configuration (:mod:`trainstab.run.inifile`) to
:func:`options_from`, so the two front ends accept the same values and reject
bad ones with the same message. An option left unset keeps its record's
default. What the options resolve to lives here too: the model under test,
its sweep, the bounds, the ladders and the baseline policy. Imports neither
torch nor pytest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainstab.checks.battery import Thresholds
from trainstab.checks.head_vs_base import PairedRule
from trainstab.checks.scaling import ScalingConfig, ScalingThresholds
from trainstab.core import values
from trainstab.core.config import PROFILES, SweepConfig, TimeLimits, TrainConfig, validate
from trainstab.core.errors import TrainstabError
from trainstab.core.files import absolute, check_folder_writable
from trainstab.core.model_names import canonical_model_name
from trainstab.core.option_fields import CLI_FLAGS as CLI_FLAGS
from trainstab.core.option_fields import INI_PREFIX, OptionSpec, declared_options, option
from trainstab.core.option_fields import PYTEST_FLAGS as PYTEST_FLAGS
from trainstab.core.revisions import MERGE_BASE
from trainstab.core.values import Executor, Precision, number
from trainstab.run.overrides import apply_overrides

if TYPE_CHECKING:  # the front ends read it (with pytest); this module only takes it
    from trainstab.run.inifile import IniFile


@values.accepts("a model name: reference, hf:<type> or package.module:factory")
def model_name(value: Any) -> str:
    """A model name written canonically (options sorted); a malformed one raises :class:`TrainstabError`."""
    return canonical_model_name(values.text(value))


@values.accepts(f"a git revision (a branch, tag or commit) or {MERGE_BASE}")
def revision(value: Any) -> str:
    """A git revision as the user named it (checked against the repository when the run starts)."""
    return values.text(value)


@values.accepts(f"one of {', '.join(PROFILES)}")
def profile(value: Any) -> str:
    """A profile name from :data:`trainstab.core.config.PROFILES` (TrainstabError otherwise, listing them)."""
    name = values.text(value)
    if name not in PROFILES:
        raise TrainstabError(f"trainstab profile {name!r} is unknown; use one of {', '.join(PROFILES)}")
    return name


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run, typed, in the order help lists them; None: the default of the record the option
    sets (:attr:`Option.default` says which). The options that belong to a run alone are declared here; the
    others on their records' fields (module docstring)."""

    model: str = option(
        "reference", "model", model_name, "model to check: reference, hf:<type> or package.module:factory[k=v]"
    )
    profile: str = option("default", "profile", profile, "steps and LR grid preset: quick, default or thorough")
    seed: int | None = None  # None: --set seed=N, else TrainConfig's (run_seed says which)
    steps: int | None = option(None, "steps", values.steps, "optimizer steps per run (default: the profile's)")
    lrs: tuple[float, ...] | None = option(
        None, "lrs", values.lr_grid, "comma-separated LR grid (default: the profile's)"
    )
    corpus: str | None = option(
        None, "corpus", values.text, "token file (.npy or uint16 .bin) instead of the bundled corpus"
    )
    device: str | None = None  # None: --set device=..., else TrainConfig's (cpu)
    precision: Precision | None = None  # None: --set precision=..., else TrainConfig's (fp32)
    executor: Executor | None = None  # None: SweepConfig's (local)
    optimizer: str | None = None  # None: --set optimizer=..., else TrainConfig's (adamw)
    max_lr: float | None = None
    attention_logit_bound: float | None = None
    log_z_bound: float | None = None
    lr_sensitivity_bound: float | None = None
    sensitivity_slope_bound: float | None = None
    grad_rms_over_eps: float | None = None
    spike_score_bound: float | None = None
    report_only: frozenset[str] | None = None
    ignore_params: tuple[str, ...] | None = None
    report: str | None = option(
        None, "report", values.text, "write a JSON, plots and an HTML page of every check to this folder"
    )
    # Resolved by the front end: relative to pytest's rootdir or the config file.
    baselines: str | None = option(
        None, "baselines", values.text, "folder of committed baselines to compare with (off when unset)"
    )
    # The persistent sweep cache (trainstab.cache.sweep_cache); resolved as baselines are.
    cache: str | None = option(
        None,
        "cache",
        values.text,
        "folder of sweeps kept between runs: an unchanged model is read, not trained (off when unset)",
    )
    target_params: float | None = None
    max_extrapolation: float | None = None
    widths: tuple[int, ...] | None = None
    z_loss_pull: float | None = None
    z_loss_cost: float | None = None
    depths: tuple[int, ...] | None = None
    slow_step_seconds: float | None = None
    time_limit_seconds: float | None = None  # None: no limit
    # Gate the change against a git revision trained in the same run (trainstab.gate.against); None: off.
    against: str | None = option(
        None,
        "against",
        revision,
        f"also compare every check with the model at this git revision, trained in the same run; alone or "
        f"'{MERGE_BASE}': the merge base of HEAD with the default branch",
        bare=MERGE_BASE,
    )
    against_seeds: int | None = None
    # Not options of the table: each front end has its own flags for them.
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


#: The fields of :class:`RunOptions` that are not options of the table.
NOT_IN_THE_TABLE = ("overrides", "update_baseline", "regen_all", "flags")
#: The records whose fields options set, and how help texts name them where their defaults differ.
RECORDS: dict[type[Any], str] = {
    TrainConfig: "training",
    SweepConfig: "the sweep",
    Thresholds: "the battery",
    ScalingThresholds: "the scaling checks",
    ScalingConfig: "the ladders",
    TimeLimits: "the time limits",
    PairedRule: "the comparison with a base revision",
}


@dataclass(frozen=True)
class Option:
    """One option of a stability run: a row of :data:`OPTIONS`, read off the fields that declare it."""

    name: str  # --trainstab-<name> in pytest, --<name> in the CLI
    parse: Callable[[Any], Any]  # text, or a TOML value (int, float, bool, list) -> typed value; ValueError if bad
    help: str
    sets: tuple[tuple[type[Any], str], ...] = ()  # (record, field) it sets besides RunOptions.<field>
    bare: str | None = None  # what the flag given without a value means (None: it needs one)

    @property
    def field(self) -> str:
        """The :class:`RunOptions` field it fills (``max_lr``)."""
        return self.name.replace("-", "_")

    @property
    def key(self) -> str:
        """The ini key (``trainstab_max_lr``)."""
        return INI_PREFIX + self.field

    @property
    def default(self) -> Any:
        """Its default: the RunOptions field's, or else the first record field it sets (None: off, or per profile)."""
        own = RunOptions.__dataclass_fields__[self.field].default
        if own is not None or not self.sets:
            return own
        return _default_of(*self.sets[0])

    def described(self) -> str:
        """The help text with the default (each record's, where they differ), as a user would type it."""
        if self.default is None:
            return self.help
        defaults = [(record, _shown(_default_of(record, name))) for record, name in self.sets]
        if not defaults:
            defaults = [(RunOptions, _shown(self.default))]
        (_, first), *others = defaults
        shown = first + "".join(f"; {RECORDS[record]}: {value}" for record, value in others if value != first)
        return f"{self.help} (default: {shown})"


def _default_of(record: type[Any], name: str) -> Any:
    """The default of the field ``name`` of ``record``: stated once, in that record."""
    return getattr(record(), name)


def _shown(value: Any) -> str:
    """A default as a user would type it: ``0.3``, ``1e9``, ``32,48,64``, ``none``."""
    if isinstance(value, frozenset):
        return ",".join(sorted(value)) or "none"
    if isinstance(value, tuple | list):
        return ",".join(number(x) if isinstance(x, float) else str(x) for x in value) or "none"
    return number(value) if isinstance(value, float) else str(value)


def _table() -> tuple[Option, ...]:
    """The option table: a row per option field of :class:`RunOptions`, in its order, from the fields declaring it.

    Each option is declared with a help text exactly once and with one parser everywhere; a declared option
    with no :class:`RunOptions` field (nowhere to hold its value) is a mistake in this package, raised at import.
    """
    declared: dict[str, list[tuple[type[Any], str, OptionSpec]]] = {}
    records: tuple[type[Any], ...] = (RunOptions, *RECORDS)
    for record in records:
        for name, spec in declared_options(record):
            declared.setdefault(spec.name, []).append((record, name, spec))
    rows = []
    for run_field in dataclasses.fields(RunOptions):
        if run_field.name in NOT_IN_THE_TABLE:
            continue
        name = run_field.name.replace("_", "-")
        where = declared.pop(name, [])
        helped = [spec for _, _, spec in where if spec.help]
        parsers = {spec.parse for _, _, spec in where}
        if not where:
            raise TypeError(
                f"RunOptions.{run_field.name} is no option: declare it with option() on the record it sets (or on "
                "RunOptions), or add it to NOT_IN_THE_TABLE"
            )
        if len(helped) != 1 or len(parsers) != 1:
            raise TypeError(f"option {name!r}: declared with help {len(helped)} times and {len(parsers)} parsers")
        sets = tuple((record, field_name) for record, field_name, _ in where if record is not RunOptions)
        rows.append(Option(name, parsers.pop(), helped[0].help, sets, helped[0].bare))
    if declared:
        raise TypeError(f"options declared with no RunOptions field to hold them: {', '.join(declared)}")
    return tuple(rows)


OPTIONS: tuple[Option, ...] = _table()
OPTION_BY_NAME = {option.name: option for option in OPTIONS}


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
    typed: dict[str, Any] = {}
    for row in OPTIONS:
        source, value = raw.get(row.name, (row.key, None))
        on_command_line = source.startswith("--")
        if value == "" and on_command_line:  # --lrs '' on a command line: a mistake, not "the default"
            accepted = values.expected(row.parse)
            raise TrainstabError(f"{source} is empty; give a value ({accepted}) or leave the flag out")
        if value is None or value == "":
            continue  # the default applies
        try:
            typed[row.field] = row.parse(value)
        except ValueError as error:
            wrong_type = f", not {error.kind}" if isinstance(error, values.NotAccepted) else ""
            raise TrainstabError(
                f"{source}={values.written(value)}: expected "
                f"{values.expected(row.parse, not on_command_line)}{wrong_type}"
            ) from None
    if typed.get("executor") == "ray" and typed.get("time_limit_seconds") is not None:
        # Refused, not ignored: a run given a limit counts on it ending, and Ray's tasks are not watched (yet).
        source, value = raw["time-limit-seconds"]
        raise TrainstabError(
            f"{source}={values.written(value)}: the time limit does not apply on the Ray executor "
            f"({raw['executor'][0]}=ray) yet, so training there would not stop at it; leave it out, or train on "
            "the local executor"
        )
    try:  # checked now, not in every test
        apply_overrides(SweepConfig(), overrides)
    except TrainstabError as error:
        raise TrainstabError(f"{overrides_source}: {error}") from None
    return RunOptions(**typed, overrides=tuple(overrides), flags=flags)


def options_from(
    given: Mapping[str, Any], ini: IniFile, set_flags: Sequence[str] = (), flags: str = PYTEST_FLAGS
) -> RunOptions:
    """A front end's options: its flags, else its pytest configuration's keys, parsed by the one table.

    ``given`` maps option names to the flag's value (None: not given); ``set_flags`` are the ``--set`` /
    ``--trainstab-set`` lines, applied after the configuration's ``trainstab_set`` lines. Folders are left as
    written: each front end says what a relative one is relative to.
    """
    raw: dict[str, tuple[str, Any]] = {}
    for row in OPTIONS:
        flag = given.get(row.name)
        if flag is None and row.key in ini.values:
            raw[row.name] = (ini.source(row.key), ini.values[row.key])
        else:
            raw[row.name] = (flags + row.name, flag)
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


def _settings(options: RunOptions, record: type[Any]) -> dict[str, Any]:
    """The fields of ``record`` that the run's options set (the options left unset keep its defaults)."""
    settings = {}
    for row in OPTIONS:
        value = getattr(options, row.field)
        for target, name in row.sets:
            if target is record and value is not None:
                settings[name] = value
    return settings


def thresholds(options: RunOptions) -> Thresholds:
    """The battery's bounds with the run's options applied."""
    return Thresholds(**_settings(options, Thresholds), flags=options.flags)


def scaling_thresholds(options: RunOptions) -> ScalingThresholds:
    """The scaling checks' bounds with the run's options applied (shared bounds are set by the same options)."""
    return ScalingThresholds(**_settings(options, ScalingThresholds), flags=options.flags)


def time_limits(options: RunOptions) -> TimeLimits:
    """How long the run's training may go without a step before it says so, and how long it may train."""
    return TimeLimits(**_settings(options, TimeLimits), flags=options.flags)


def paired_rule(options: RunOptions) -> PairedRule:
    """How ``--against`` compares the change with its base: the seeds each side trains."""
    return PairedRule(**_settings(options, PairedRule))


def scaling_plan(options: RunOptions) -> ScalingConfig:
    """The ladders of the scaling checks, with the run's ``widths`` and ``depths``."""
    return ScalingConfig(**_settings(options, ScalingConfig))


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
