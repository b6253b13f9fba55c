"""The ``trainstab`` command line.

    trainstab sweep [--model reference] [--set key=value ...] [--lrs 1e-3,1e-2]
                    [--steps N] [--seed N] [--corpus FILE] [--json PATH]
    trainstab check [the pytest plugin's options without --trainstab-] [--checks NAMES] [--report DIR]
                    [--baselines DIR [--update-baseline | --regen-all]]
    trainstab fuzz | reproduce | forecast ...
    trainstab --version

Exit status, one meaning each and the same in every subcommand (:mod:`trainstab.core.errors`, and each
subcommand's ``--help``): 0 success, 1 a check failed, 2 bad input or a model that cannot be built (one
line, before training), 3 the model crashed during training (one line; ``--traceback`` for the whole
traceback), 4 inconclusive (a forecast that refuses to extrapolate), 130 interrupted. Every flag a command
accepts changes its run: one that would change nothing (a scaling bound without a scaling check) is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from trainstab.cache import sweep_cache
from trainstab.cache.session_cache import CacheUse
from trainstab.checks.battery import BATTERY, REPORT_ONLY
from trainstab.checks.forecast import forecast_attention_logits, forecast_gradient_rms
from trainstab.checks.registry import (
    BUILT_IN_CHECKS,
    MUP_CHECK_NAMES,
    PAIRED_CHECK_NAMES,
    STABILITY_FORECAST_NAMES,
    all_checks,
    battery_names,
    configured_by,
    report_order,
    sweep_check_names,
)
from trainstab.checks.scaling import Evidence
from trainstab.cli import baselines, compare, init
from trainstab.cli.help import description, epilog, exit_status
from trainstab.cli.progress import Reporter
from trainstab.cli.terminal import data_output, standard_output_for_data_alone, use_ascii_where_needed
from trainstab.core.config import SweepConfig, TimeLimits, estimated_bytes, on_gpu, validate
from trainstab.core.environment import light_environment, trainstab_version
from trainstab.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_CRASHED,
    EXIT_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_INTERRUPTED,
    Inconclusive,
    ModelCrashed,
    TrainstabError,
)
from trainstab.core.files import (
    WRITE_FAILED,
    absolute,
    check_folder_writable,
    check_writable,
    invocation_folder,
    json_text,
    keep_previous,
    set_invocation_folder,
    shown,
    write_files,
    write_json,
)
from trainstab.core.ladder import run_ladder, width_configs
from trainstab.core.process_state import ProcessState, warning_text
from trainstab.core.ray_address import check_cluster_reachable, keep_local_ray_on_loopback
from trainstab.core.results import ATTENTION_DIVERGENCE_LEVEL, SweepResult, sweep_to_dict
from trainstab.core.revisions import MERGE_BASE
from trainstab.core.values import expected, positive, positive_int, seed
from trainstab.gate.against import Pair
from trainstab.gate.baseline import header_lines
from trainstab.gate.report import model_curves, write_report
from trainstab.gate.verdict import Verdict, judge
from trainstab.run.inifile import read_ini
from trainstab.run.options import (
    CLI_FLAGS,
    OPTION_BY_NAME,
    OPTIONS,
    ModelUnderTest,
    RunOptions,
    options_from,
    paired_rule,
    policy_from,
    run_seed,
    scaling_plan,
    scaling_thresholds,
    sweep_config,
    time_limits,
    with_absolute_paths,
)
from trainstab.run.overrides import apply_overrides

__all__ = ["EXIT_BAD_INPUT", "EXIT_CRASHED", "EXIT_FAILED", "EXIT_INCONCLUSIVE", "EXIT_INTERRUPTED", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"trainstab: error: {message} (see {self.prog} --help)\n")


#: ``--json -``: the JSON goes to standard output instead of a file.
STDOUT = Path("-")


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser of the option table's kind, with its "expected ..." wording."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected(parse)}") from None

    convert.__name__ = parse.__name__
    return convert


def _add_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """The run options ``names`` from the shared table, as ``--<name>`` (parsed later, with the ini file's)."""
    for name in names:
        option = OPTION_BY_NAME[name]
        metavar = option.name.upper().replace("-", "_")  # --max-lr MAX_LR
        bare: dict[str, Any] = {"nargs": "?", "const": option.bare} if option.bare is not None else {}  # --against
        parser.add_argument(
            f"--{option.name}", dest=option.field, default=None, metavar=metavar, help=option.described(), **bare
        )


def _add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--set key=value`` (repeatable), added to the configuration file's ``trainstab_set`` lines."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` and ``--traceback``: every command takes them."""
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress: neither the bar drawn on a terminal nor the line printed per finished stack or point",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="when the model crashes, print its whole traceback too"
    )


def _command(commands: Any, name: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose help has its description, an example and its exit statuses (:mod:`cli_help`)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description(name),
        epilog=epilog(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


#: The run options each command takes from the shared table (the rest come from the configuration file).
#: Where and how a run trains: every training command takes them.
PLACEMENT_OPTIONS = ("device", "precision", "executor")
#: How long training may go quiet, and may take: the commands that train sweeps take them.
LIMIT_OPTIONS = ("slow-step-seconds", "time-limit-seconds")
SWEEP_OPTIONS = (
    "model",
    "profile",
    "lrs",
    "steps",
    "seed",
    "corpus",
    "optimizer",
    *PLACEMENT_OPTIONS,
    *LIMIT_OPTIONS,
)
CHECK_OPTIONS = tuple(option.name for option in OPTIONS)
FUZZ_OPTIONS = ("model", "seed", "optimizer", *PLACEMENT_OPTIONS)
FORECAST_OPTIONS = (
    "model",
    "profile",
    "lrs",
    "corpus",
    "target-params",
    "widths",
    "max-extrapolation",
    "grad-rms-over-eps",
    "steps",
    "seed",
    "max-lr",
    "optimizer",
    *PLACEMENT_OPTIONS,
    *LIMIT_OPTIONS,
)
#: ``--set`` keys the fuzz map sets itself at every point it trains (its axes width and warm-up, the point's
#: weight decay, each point's length and probes): given on the command line they would change nothing.
FUZZ_SETS = ("width", "warmup_fraction", "weight_decay", "steps", "probe_every")


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``check`` and ``compare``: the plugin's options without the --trainstab- prefix, ``--set``,
    ``--checks`` and the baseline rewrite flags."""
    _add_options(parser, CHECK_OPTIONS)
    _add_overrides(parser, "override a model or training option, e.g. --set qk_layernorm=false")
    parser.add_argument(
        "--checks",
        metavar="NAMES",
        help=f"comma-separated checks (default: the battery, {', '.join(BATTERY)}, and the checks a team "
        "registered to run with it: docs/extending.md); also the stability "
        f"forecasts {', '.join(STABILITY_FORECAST_NAMES)}, the muP checks {', '.join(MUP_CHECK_NAMES)} (standard "
        f"parameterisation fails them by design) and the paired {', '.join(PAIRED_CHECK_NAMES)}",
    )
    rewrite = parser.add_mutually_exclusive_group()
    rewrite.add_argument("--update-baseline", action="store_true", help="rewrite missing or failing baselines")
    rewrite.add_argument("--regen-all", action="store_true", help="rewrite every baseline")
    _add_output_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="trainstab",
        description="Small-scale proxies for large-scale training instabilities.",
        epilog=exit_status("a check failed (each command's --help says what fails it)"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trainstab {trainstab_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sweep = _command(commands, "sweep", "train one tiny model per learning rate and report stability")
    _add_options(sweep, SWEEP_OPTIONS)
    _add_overrides(sweep, "override a model or training option, e.g. --set qk_layernorm=false (repeatable)")
    sweep.add_argument(
        "--workers", type=_typed(positive_int), help="worker processes (default: one per core; local CPU runs only)"
    )
    sweep.add_argument(
        "--json", type=Path, help="write every metric, the config and the environment here (- for standard output)"
    )
    _add_output_flags(sweep)

    check = _command(commands, "check", "judge one model with pytest's checks, held to its baselines")
    _add_check_arguments(check)
    compared = _command(commands, "compare", "gate the change against its base revision, trained in the same run")
    _add_check_arguments(compared)

    fuzz = _command(commands, "fuzz", "search hyperparameters for unstable regions and map them")
    _add_options(fuzz, FUZZ_OPTIONS)
    _add_overrides(
        fuzz,
        "fixed model or training option for every example, e.g. --set qk_layernorm=false (not the map's own: "
        f"{', '.join(FUZZ_SETS)})",
    )
    fuzz.add_argument(
        "--budget", type=_typed(positive_int), default=40, help="examples to train (default: %(default)s)"
    )
    explored = "largest LR explored (default: %(default)s)"
    fuzz.add_argument(
        "--max-lr", dest="explore_max_lr", metavar="MAX_LR", type=_typed(positive), default=1.0, help=explored
    )
    fuzz.add_argument("--json", type=Path, help="write every explored point and the map here (- for standard output)")
    fuzz.add_argument("--plot", type=Path, help="write the map as a PNG here")
    _add_output_flags(fuzz)

    reproduce = _command(commands, "reproduce", "run the paper's findings at proxy scale: PNGs and a summary")
    reproduce.add_argument("--out", type=Path, default=Path("trainstab-findings"), help="output folder")
    reproduce.add_argument("--quick", action="store_true", help="fewer steps and sizes: about 3 minutes on 2 cores")
    reproduce.add_argument("--seed", type=_typed(seed), default=0, help="seed of every run (default: %(default)s)")
    reproduce.add_argument(
        "--model",
        default="reference",
        help="the model to run the findings on (default: reference); on your own model, the findings that flip "
        "a switch of the reference are skipped and listed",
    )
    reproduce.add_argument("--only", default="", help="comma-separated findings to run (default: all)")
    _add_output_flags(reproduce)

    init_command = _command(commands, "init", "scaffold your repository: test file, configuration, CI")
    init.add_arguments(init_command)

    baselines_command = _command(commands, "baselines", "check a folder of baselines without training")
    baselines.add_arguments(baselines_command)

    forecast = _command(commands, "forecast", "forecast attention logits and gradient RMS at a target size")
    _add_options(forecast, FORECAST_OPTIONS)
    _add_overrides(forecast, "model or training option, e.g. --set qk_layernorm=false")
    fits = "power law (default) or the paper's quadratic in log space (4+ widths)"
    forecast.add_argument("--fit", choices=("power", "quadratic"), default="power", help=fits)
    _add_output_flags(forecast)
    return parser


def run_options(args: argparse.Namespace) -> RunOptions:
    """The run's options: the command's flags, else the pytest configuration's ``trainstab_*`` keys.

    One configuration for both front ends, by construction: the file is the one pytest's own discovery picks
    for a plain ``pytest`` in this folder (:func:`trainstab.run.inifile.read_ini`), read as the plugin reads it
    and parsed by the same table; ``--set`` adds to the file's ``trainstab_set`` lines, as in pytest. Every
    path comes back absolute, before any model's code runs: a baseline or cache folder from the file is
    relative to pytest's rootdir (the file's folder); any other relative path, to the folder trainstab
    started in (:func:`trainstab.core.files.invocation_folder`).
    """
    ini = read_ini()
    given = {option.name: getattr(args, option.field, None) for option in OPTIONS}
    options = options_from(given, ini, args.overrides, CLI_FLAGS)
    from_file = {name: ini.rootdir for name in ("baselines", "cache") if getattr(args, name, None) is None}
    if options.executor == "ray":  # before any model's code, which may import Ray and start one itself
        keep_local_ray_on_loopback()
        check_cluster_reachable()  # seconds, not Ray's ten minutes of retries
    resolved = dataclasses.replace(
        with_absolute_paths(options, invocation_folder(), from_file),
        update_baseline=getattr(args, "update_baseline", False),
        regen_all=getattr(args, "regen_all", False),
    )
    args.resolved_options = resolved  # for main's warning (_model_of): no second read of the file, no Ray probe
    return resolved


def _number(value: float, digits: int = 4) -> str:
    """A compact number for a table cell ("-" for NaN)."""
    if not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}" if abs(value) >= 1e4 else f"{value:.{digits}f}"


def sweep_table(result: SweepResult) -> Table:
    """One row per learning rate: losses, max attention logit, log Z, divergence."""
    table = Table(title="trainstab sweep", caption=_caption(result))
    for column in ("LR", "final loss", "eval loss", "max attn logit", "log Z", "diverged"):
        table.add_column(column, justify="right")
    for run in result.runs:
        diverged = f"yes (step {run.diverged_at_step})" if run.diverged else "no"
        table.add_row(
            f"{run.lr:g}",
            _number(run.final_loss),
            _number(run.eval_loss),
            f"{run.max_attention_logit:.3g}",
            _number(run.log_z_mean, 3),
            diverged,
            style="red" if run.diverged or run.max_attention_logit > ATTENTION_DIVERGENCE_LEVEL else None,
        )
    return table


def _caption(result: SweepResult) -> str:
    """The sweep's summary line under the table."""
    return (
        f"LR sensitivity {result.lr_sensitivity:.4f} · best LR {result.best_lr:g} · "
        f"l0 {result.runs[0].initial_loss:.4f} · seed {result.config.train.seed} · {result.elapsed_seconds:.1f} s"
    )


def _trained_with_progress(
    configs: list[SweepConfig], console: Console, no_progress: bool, limits: TimeLimits | None = None
) -> list[SweepResult]:
    """``configs``' sweeps, trained as one batch in this process's pool: a bar on a terminal, a line per stack,
    and a line for a step slower than ``limits.slow_step_seconds`` even under ``--no-progress``."""
    from trainstab.train.sweep import run_sweeps  # training: torch is imported when a command trains

    if not configs:
        return []
    with Reporter(console, not no_progress, "training", "steps") as progress:
        return run_sweeps(configs, progress.update, progress.stack_done, limits, progress.alert)


def _preflight(config: SweepConfig) -> None:
    """Everything that can be wrong before training (config, corpus, model), checked before any header."""
    from trainstab.train.sweep import preflight  # builds the model: torch

    preflight(config)


def placement(config: SweepConfig, options: RunOptions | None = None) -> str:
    """Where and how the run trains, for its header line: only what differs from AdamW on the CPU in fp32, locally.

    An optimizer the header already names among ``options``' ``--set`` overrides is not named twice.
    """
    defaults = SweepConfig()
    set_keys = {override.partition("=")[0].strip() for override in options.overrides} if options else set()
    shown = {
        "optimizer": (config.train.optimizer, defaults.train.optimizer if "optimizer" not in set_keys else None),
        "device": (config.train.device, defaults.train.device),
        "precision": (config.train.precision, defaults.train.precision),
        "executor": (config.executor, defaults.executor),
    }
    return "".join(
        f" {name}={value}" for name, (value, default) in shown.items() if default is not None and value != default
    )


def run_sweep_command(args: argparse.Namespace, console: Console) -> int:
    """``trainstab sweep``: run, print the table, optionally write JSON."""
    options = run_options(args)
    config = dataclasses.replace(sweep_config(options, ModelUnderTest(options.model)), workers=args.workers)
    if args.workers is not None and (config.executor == "ray" or on_gpu(config)):
        placed = (
            "Ray places the stacks on its cluster" if config.executor == "ray" else "a GPU trains one stack at a time"
        )
        raise TrainstabError(f"--workers {args.workers} would change nothing: {placed}; leave it out")
    _preflight(config)  # before the header; run_sweep's own preflight then hits check_model's memo
    if args.json is not None and args.json != STDOUT:
        check_writable(args.json)  # before minutes of training, not after
    console.print(
        f"trainstab sweep: model={options.model}{options.overrides_shown()} seed={config.train.seed} "
        f"lrs={','.join(f'{x:g}' for x in config.lrs)}"
        f"{placement(config, options)}",
        soft_wrap=True,
    )
    (result,) = _trained_with_progress([config], console, args.no_progress, time_limits(options))
    console.print(sweep_table(result))
    if args.json is not None:
        _write_json_output(args.json, sweep_to_dict(result), console)
    return 0


def _write_json_output(path: Path, data: object, console: Console) -> None:
    """``--json PATH``: the file written atomically (an earlier one kept), or the JSON on standard output for ``-``."""
    if path == STDOUT:
        stdout = data_output()  # the only thing on stdout: the rest of the run, a model's prints too, went to stderr
        stdout.write(json_text(data))
        stdout.flush()
        return
    previous = write_json(path, data)
    console.print(f"wrote {shown(path)}" + (f" (the file it replaced is now {shown(previous)})" if previous else ""))


_BATTERY = frozenset(BATTERY)
#: The options that configure some checks only, and those checks: derived from each check's row (its ``options``
#: and ``reads``: trainstab.checks.registry.configured_by). Given on the command line while none of those checks runs,
#: such a flag would change nothing, and is refused; every other option shapes the training, which every check reads.
CONFIGURES: dict[str, frozenset[str]] = configured_by(BUILT_IN_CHECKS)


def chosen_checks(text: str | None) -> list[str]:
    """The checks ``--checks`` names (any registered check), in the order given; the battery when not given."""
    if text is None:
        return list(battery_names())
    checks = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    known = all_checks()
    unknown = [name for name in checks if name not in known]
    if unknown or not checks:
        raise TrainstabError(f"--checks {text!r}: unknown check(s) {unknown}; choose from {', '.join(known)}")
    return checks


def refuse_idle_flags(args: argparse.Namespace, checks: list[str]) -> None:
    """Refuse a flag given on the command line that configures none of the chosen checks (:data:`CONFIGURES`).

    Only flags: a ``trainstab_*`` key of the configuration file is shared with pytest, which may run other checks.
    """
    table = configured_by(all_checks())  # a team's checks included; derived once
    for name in CONFIGURES:
        field = OPTION_BY_NAME[name].field if name in OPTION_BY_NAME else name.replace("-", "_")
        given = getattr(args, field, None)
        if given in (None, False):
            continue
        configured = _configured(name, given, table)
        if configured & set(checks):
            continue
        team = sorted(configured - set(BUILT_IN_CHECKS), key=report_order)  # a team's checks, if it registered some
        battery = "the battery's checks" + (f" and {', '.join(team)}" if team else "")
        which = battery if configured - set(team) == _BATTERY else ", ".join(sorted(configured, key=report_order))
        chosen = "(default: the battery)" if args.checks is None else repr(args.checks)
        example = min(configured, key=report_order)
        raise TrainstabError(
            f"--{name} configures only {which}, and --checks {chosen} runs none of them, so it would change "
            f"nothing; add one (e.g. --checks {example}) or leave --{name} out"
        )


def _configured(name: str, given: Any, table: dict[str, frozenset[str]]) -> frozenset[str]:
    """The checks the flag ``name`` configures with the value ``given``.

    ``--report-only`` configures the checks it names (they stop failing) and those report-only by default
    (they start failing unless named); a name that is not a battery check is refused when the value is parsed.
    """
    if name != "report-only" or not isinstance(given, str):
        return table.get(name, frozenset())
    named = {check.strip() for check in given.split(",")} & set(sweep_check_names())
    return frozenset(named | set(REPORT_ONLY))


class _Sweeps:
    """The sweeps a ``check`` reads, each trained once, through the persistent cache when there is one.

    What :class:`~trainstab.checks.scaling.Evidence` asks for: the command first asks for everything its checks read,
    so it trains as one batch (ladder rungs and the z-loss twin beside the base sweep).
    """

    def __init__(
        self, console: Console, no_progress: bool, cache: str | None, limits: TimeLimits | None = None
    ) -> None:
        self.console, self.no_progress, self.cache = console, no_progress, cache
        self.limits = limits  # how long training may go quiet, and may take (--slow-step-seconds, ...)
        self.known: dict[SweepConfig, SweepResult] = {}
        self.seconds = 0.0  # spent training (or reading the cache)
        self.uses: list[CacheUse] = []  # per sweep: what the persistent cache did for it

    def __call__(self, configs: list[SweepConfig]) -> list[SweepResult]:
        missing = [config for config in dict.fromkeys(configs) if config not in self.known]
        if missing:
            started = time.perf_counter()
            if self.cache is None:
                trained = self._train(missing)
            else:
                found = sweep_cache.cached_many(Path(self.cache), missing, self._train)
                trained = [result for result, _ in found]
                self.uses.extend(use for _, use in found)
            self.seconds += time.perf_counter() - started
            self.known.update(zip(missing, trained, strict=True))
        return [self.known[config] for config in configs]

    def _train(self, configs: list[SweepConfig]) -> list[SweepResult]:
        return _trained_with_progress(configs, self.console, self.no_progress, self.limits)

    def cache_lines(self) -> list[str]:
        """What the run did with the persistent cache: sweeps read, trained and kept, or trained but not kept (and
        why), and each entry that did not match this run (retrained)."""
        notes = sweep_cache.cache_notes(str(self.cache), self.uses)
        if len(self.uses) == 1:
            done = "read from" if self.uses[0].read else "trained and kept in"
            return notes or [f"sweep {done} the cache {self.cache}"]
        read, kept, unkept = sweep_cache.cache_counts(self.uses)
        counts = f"{read} sweep(s) read from the cache {self.cache}, {kept} trained and kept in it"
        return [counts + (f", {unkept} trained but not kept" if unkept else ""), *notes]


def _judged(
    label: str,
    evidence: Evidence,
    checks: list[str],
    options: RunOptions,
    say: Callable[[str], None],
    pair: Pair | None = None,
) -> tuple[list[Verdict], list[tuple[str, str]]]:
    """Each check's verdict (the pipeline pytest runs), and the checks that could not answer, with why."""
    verdicts, inconclusive = [], []
    for name in checks:
        if name == "coordinates":  # trains its own short runs now, one width after the other
            say(f"  coordinate check: training widths {','.join(map(str, evidence.scaling.coordinates.widths))}")
        try:
            verdicts.extend(judge(label, evidence, [name], options, pair))
        except Inconclusive as error:
            inconclusive.append((name, str(error)))
    return verdicts, inconclusive


def run_check_command(args: argparse.Namespace, console: Console) -> int:
    """``trainstab check``: train what the checks read, judge them, compare with baselines, print the table."""
    options = run_options(args)
    if args.command == "compare" and options.against is None:  # compare's base: the merge base by default
        options = dataclasses.replace(options, against=MERGE_BASE)
    if options.against is None and args.against_seeds is not None:
        raise TrainstabError("--against-seeds sets how many seeds --against trains, and --against is not given")
    checks = chosen_checks(args.checks)
    refuse_idle_flags(args, checks)
    policy_from(options)  # a rewrite flag without a usable baseline folder: refused before training
    target = ModelUnderTest(options.model)
    label = target.label(options)
    config = sweep_config(options, target)
    asked = args.command == "compare" or args.against is not None  # not just the configuration's key
    trainer = compare.open_base(options, config.model_name, asked)  # a revision that does not exist: refused first
    try:
        _preflight(config)
        sweeps = _Sweeps(console, args.no_progress, options.cache, time_limits(options))
        evidence = Evidence(config, scaling_plan(options), sweeps)
        pair = Pair(config, paired_rule(options), sweeps, trainer) if trainer is not None else None
        return _checked(args, console, options, checks, label, evidence, sweeps, pair)
    finally:
        if trainer is not None:
            trainer.close()  # the base's checkout, also on Ctrl-C


def _checked(
    args: argparse.Namespace,
    console: Console,
    options: RunOptions,
    checks: list[str],
    label: str,
    evidence: Evidence,
    sweeps: _Sweeps,
    pair: Pair | None,
) -> int:
    """The rest of ``trainstab check`` once its inputs are settled: train, judge, print, write; the exit status."""
    config = evidence.base
    wanted = list(dict.fromkeys(evidence.sweeps_read_by(checks)))  # a ladder the options refuse fails here
    for rung in wanted:
        _preflight(rung)  # every rung too (the largest one's memory): refused before anything trains
    report = Path(options.report) if options.report is not None else None
    if report is not None:
        check_folder_writable(report, "--report")
    if options.cache is not None:
        check_folder_writable(Path(options.cache), "--cache")
    seed = config.train.seed
    console.print(
        f"trainstab {args.command}: model={label}{options.overrides_shown()} seed={seed} steps={config.train.steps} "
        f"lrs={','.join(f'{x:g}' for x in config.lrs)}{placement(config, options)}",
        soft_wrap=True,
    )
    ini = read_ini()
    if ini.path is not None and (ini.values or ini.overrides):
        console.print(f"configuration: {ini.name} (flags on the command line win)", markup=False, soft_wrap=True)
    for line in header_lines(options):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if pair is not None:
        console.print(compare.header(pair), markup=False, highlight=False, soft_wrap=True)
    sweeps([*wanted, *(pair.configs if pair is not None else [])])  # everything the checks read, as one batch
    for line in sweeps.cache_lines() if sweeps.uses else []:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if pair is not None:
        compare.train_base(pair, console)
    progress = Reporter(console, not args.no_progress, "judging")  # its lines only: what it reads is trained
    verdicts, inconclusive = _judged(label, evidence, checks, options, progress.line, pair)
    written = [line for verdict in verdicts for line in write_files(verdict.writes, CLI_FLAGS)]
    console.print(check_table(verdicts, sweeps.seconds, f"trainstab {args.command}"))
    if pair is not None:
        console.print(compare.compare_table(verdicts))
    for verdict in verdicts:
        if not verdict.passed:
            console.print(f"FAIL {verdict.check}: {verdict.failure}", markup=False, highlight=False, soft_wrap=True)
        elif verdict.verdict == "warn":  # report-only: shown with its reason, never failing the run
            console.print(f"warn {verdict.check}: {verdict.why}", markup=False, highlight=False, soft_wrap=True)
    for name, why in inconclusive:
        console.print(f"INCONCLUSIVE {name}: {why}", markup=False, highlight=False, soft_wrap=True)
    if report is not None:
        try:
            header = {"seed": seed, "environment": light_environment(seed)}
            base = (pair.against, pair.base_sweeps.sweeps[0]) if pair and pair.base_sweeps.sweeps else None
            curves = {label: model_curves(label, sweeps.known[config], base)} if config in sweeps.known else {}
            files = write_report(report, verdicts, curves, header)
        except OSError as error:
            written.append(f"{WRITE_FAILED} the report in {report} ({error.strerror or error}); check that folder")
        else:
            written.append(f"wrote {files[-1]} (report: {len(files)} files)")
    for line in written:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    failed = sum(not verdict.passed for verdict in verdicts)
    warned = sum(verdict.verdict == "warn" for verdict in verdicts)
    unwritten = sum(line.startswith(WRITE_FAILED) for line in written)
    judged = len(verdicts) + len(inconclusive)
    summary = f"{failed} of {judged} checks failed" if failed else f"all {len(verdicts)} checks passed"
    if inconclusive:
        summary = (summary if failed or verdicts else "no check passed") + f", {len(inconclusive)} inconclusive"
    if unwritten:  # never report success when a file the run owed was not written
        summary += f", but {unwritten} file(s) could not be written (above)"
    console.print(summary + (f" ({warned} report-only warning(s) above)" if warned else ""))
    if failed or unwritten:
        return EXIT_FAILED
    return EXIT_INCONCLUSIVE if inconclusive else 0


def check_table(verdicts: list[Verdict], seconds: float, title: str = "trainstab check") -> Table:
    """The checks' verdicts: one row per check with value, bound, baseline status and verdict."""
    table = Table(title=title, caption=f"training {seconds:.1f} s")
    for column, justify in (
        ("check", "left"),
        ("value", "right"),
        ("bound", "right"),
        ("baseline", "left"),
        ("verdict", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for verdict in verdicts:
        row = verdict.to_json()
        number = [f"{x:.4g}" if x is not None else "-" for x in (row["value"], row["bound"])]
        style = {"FAIL": "red", "warn": "yellow"}.get(verdict.verdict)
        table.add_row(verdict.check, *number, verdict.status, verdict.verdict, style=style)
    return table


def _refuse_fuzz_sets(overrides: list[str]) -> None:
    """Refuse a ``--set`` of a key the fuzz map sets itself at every point (:data:`FUZZ_SETS`)."""
    from trainstab.explore.fuzz import FUZZ_STEPS

    for assignment in overrides:
        key = assignment.partition("=")[0].strip()
        if key in FUZZ_SETS:
            raise TrainstabError(
                f"--set {assignment}: the fuzz map sets {key} itself at every point (it explores LR, width and "
                f"warm-up; each point trains {FUZZ_STEPS} steps), so it would change nothing; leave it out"
            )


def run_fuzz_command(args: argparse.Namespace, console: Console) -> int:
    """``trainstab fuzz``: explore LR x width x warm-up, print the map, write JSON and PNG."""
    # Hypothesis is imported when a command fuzzes; the model is built (torch) when it is checked.
    from trainstab.explore.fuzz import FUZZ_STEPS, explore
    from trainstab.explore.fuzzmap import fuzz_to_dict, lr_boundary, plot_map
    from trainstab.explore.strategies import stability_region
    from trainstab.train.devices import check_device
    from trainstab.train.models import check_model

    _refuse_fuzz_sets(args.overrides)  # the command line's: a configuration file's lines are pytest's too
    options = run_options(args)
    model, seed_used = options.model, run_seed(options)
    base = apply_overrides(SweepConfig(model_name=model), list(options.overrides))
    if options.optimizer is not None:  # the map of this optimizer (its useful LRs sit elsewhere than AdamW's)
        base = dataclasses.replace(base, train=dataclasses.replace(base.train, optimizer=options.optimizer))
    train = dataclasses.replace(
        base.train, device=options.device or base.train.device, precision=options.precision or base.train.precision
    )
    base = dataclasses.replace(base, train=train, executor=options.executor or base.executor)
    validate(base)
    check_device(base)
    # The map's axes vary (LR, width, warm-up); everything else is held at the --set values.
    m, t = base.model, base.train
    region = stability_region(
        lr=(1e-3, args.explore_max_lr),
        widths=(16, 32, 64),
        heads=(m.heads,),
        warmup_fraction=(0.0, 0.3),
        qk_layernorm=(m.qk_layernorm,),
        norm_placement=(m.norm_placement,),
        z_loss=(t.z_loss,),
        eps=(t.eps, t.eps),
        depth=(m.depth, m.depth),
        init_scale=(m.init_scale, m.init_scale),
        weight_decay_mode=(t.weight_decay_mode,),
        beta2=(t.beta2, t.beta2),
        grad_clip=(t.grad_clip, t.grad_clip),
        batch_size=(t.batch_size, t.batch_size),
        optimizer=(t.optimizer,),
    )
    check_model(model, base.model, seed_used, t.batch_size)
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None and path != STDOUT:
            check_writable(path, flag)
    console.print(
        f"trainstab fuzz: model={model} seed={seed_used} budget={args.budget} steps={FUZZ_STEPS}{placement(base)}"
    )
    started = time.perf_counter()
    with Reporter(console, not args.no_progress, "exploring", "examples") as progress:

        def point_done(done: int, total: int) -> None:
            progress.update(done, total)
            progress.line(f"  example {done}/{total} trained ({time.perf_counter() - started:.1f} s)")

        outcomes = explore(region, args.budget, model, seed_used, base=base, progress=point_done)
    data = fuzz_to_dict(outcomes, model, seed_used, args.budget, FUZZ_STEPS)
    causes = {cause: n for cause, n in data["unstable_by_cause"].items() if n}
    # Hypothesis may draw a point twice (each trains once) or run out of distinct points in a narrow region.
    repeated = len(outcomes) < args.budget
    fewer = f" (of {args.budget} draws: the rest repeated points already trained)" if repeated else ""
    console.print(f"explored {len(outcomes)} distinct points{fewer}; unstable: {causes or 'none'}")
    for width, bounds in lr_boundary(outcomes, "width").items():
        stable, first_unstable = bounds["max_stable_lr"], bounds["min_unstable_lr"]
        console.print(
            f"  width {width}: unstable from LR {first_unstable:g}, stable at {stable if stable is not None else '-'}"
            if first_unstable is not None
            else f"  width {width}: no instability seen (largest LR explored stable)"
        )
    if args.json is not None:
        _write_json_output(args.json, data, console)
    if args.plot is not None:
        previous = keep_previous(args.plot)
        title = f"trainstab fuzz: {model} {' '.join(options.overrides)} (seed {seed_used})"
        plot_map(outcomes, args.plot, title)
        console.print(
            f"wrote {shown(args.plot)}" + (f" (the file it replaced is now {shown(previous)})" if previous else "")
        )
    unstable = sum(causes.values())
    if unstable:  # like `trainstab check`: a script or CI job can gate on the map
        console.print(f"{unstable} unstable point(s) found: exit {EXIT_FAILED}")
        return EXIT_FAILED
    return 0


def run_reproduce_command(args: argparse.Namespace, console: Console) -> int:
    """``trainstab reproduce``: every finding, one PNG each, a Markdown summary."""
    from trainstab.paper.reproduce import reproduce  # its figures need numpy and matplotlib: not for every command

    only = tuple(key.strip() for key in args.only.split(",") if key.strip())
    mode = "quick" if args.quick else "full"
    console.print(f"trainstab reproduce: {mode} run, model={args.model}, seed={args.seed}, out={shown(args.out)}")
    started = time.perf_counter()
    running: list[tuple[str, int]] = []  # the finding being measured, and how many there are

    with Reporter(console, not args.no_progress, "finding") as progress:

        def finding_done() -> None:
            if running:
                key, total = running[-1]
                elapsed = time.perf_counter() - started
                progress.line(f"  finding {len(running)}/{total} {key} measured ({elapsed:.0f} s)")

        def on_finding(key: str, index: int, total: int) -> None:
            finding_done()
            running.append((key, total))
            progress.update(index, total, f"finding {key}")

        def on_sweep(config: SweepConfig) -> None:  # a finding trains several: a log sees each start
            m, lrs = config.model, ",".join(f"{lr:g}" for lr in config.lrs)
            progress.line(f"    training width {m.width}, depth {m.depth}, lrs {lrs}")

        result = reproduce(args.out, args.quick, args.seed, only, on_finding, on_sweep, model=args.model)
        finding_done()
    for finding in result.results:
        verdict = {True: "held", False: "did NOT hold", None: "measured"}[finding.held]
        console.print(f"  {finding.key:<15} {verdict:<13} {finding.evidence}", soft_wrap=True)
    for key, why in result.skipped:
        console.print(f"  {key:<15} {'not run':<13} {why}", soft_wrap=True)
    console.print(f"wrote {len(result.files)} files to {shown(args.out)} in {result.elapsed_seconds:.0f} s")
    return 0


def run_forecast_command(args: argparse.Namespace, console: Console) -> int:
    """``trainstab forecast``: train the width ladder and forecast at ``--target-params``; exit 1 if flagged.

    A forecast that refuses to extrapolate (the sizes scatter around any trend) raises
    :class:`~trainstab.core.errors.Inconclusive`: exit 4, not bad input.
    """
    from trainstab.train.sweep import preflight, run_sweeps  # training: torch is imported when a command trains

    options = run_options(args)
    config = sweep_config(options, ModelUnderTest(options.model))
    bounds = scaling_thresholds(options)
    widths = list(scaling_plan(options).widths)
    configs = width_configs(config, widths)
    if len(configs) < 3:
        shown = ",".join(str(w) for w in widths)
        raise TrainstabError(f"--widths {shown}: a forecast needs at least 3 distinct widths, e.g. 32,48,64")
    for rung in configs:
        preflight(rung)  # the largest rung's memory too: refused before the small ones train
    largest = configs[-1]
    console.print(
        f"trainstab forecast: model={options.model}{options.overrides_shown()} seed={config.train.seed} "
        f"widths={widths} "
        f"target={bounds.target_parameters:.3g} parameters{placement(config, options)}\n"
        f"memory: about {estimated_bytes(largest) / 2**30:.2g} GiB for width {largest.model.width} (the largest rung)",
        soft_wrap=True,
    )
    with Reporter(console, not args.no_progress, "training width ladder", "steps") as progress:

        def sweeps(rungs: list[SweepConfig]) -> list[SweepResult]:
            return run_sweeps(rungs, progress.update, progress.stack_done, time_limits(options), progress.alert)

        ladder = run_ladder("width", configs, sweeps)
    degree = 2 if args.fit == "quadratic" else 1
    attention = forecast_attention_logits(
        ladder,
        bounds.target_parameters,
        max_lr=bounds.max_lr,
        degree=degree,
        max_decades=bounds.max_extrapolation_decades,
    )
    gradients = forecast_gradient_rms(
        ladder, bounds.target_parameters, ratio_to_eps=bounds.grad_rms_over_eps, max_lr=bounds.max_lr, degree=degree
    )
    console.print(attention.describe(CLI_FLAGS), markup=False, highlight=False, soft_wrap=True)
    console.print(gradients.describe(CLI_FLAGS), markup=False, highlight=False, soft_wrap=True)
    flagged = len(attention.flagged) + len(gradients.flagged)
    console.print(f"{flagged} LR(s) flagged" if flagged else "no LR flagged")
    return EXIT_FAILED if flagged else 0


def _say(console: Console, text: str) -> None:
    """A message to stderr as written: no markup, no highlighting, never wrapped."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainstab`` console script; returns the exit status (:mod:`trainstab.core.errors`)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand, so the hint names its --help
        command = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
        command.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    # No markup and no highlighting: everything printed is the user's text as written. A model name with
    # options (mypkg.models:build[qk_norm=false]) would otherwise lose its "[...]" as a rich markup tag.
    use_ascii_where_needed()  # PYTHONIOENCODING=ascii: stand-ins, not a UnicodeEncodeError after training
    # With --json -, standard output carries the JSON alone, for a pipe: everything else goes to stderr, the
    # model's own prints and its worker processes' output included.
    to_stderr = getattr(args, "json", None) == STDOUT
    console = Console(markup=False, highlight=False, stderr=to_stderr)
    errors = Console(stderr=True, markup=False, highlight=False)
    # Every path is fixed before any model's code runs: a model module may change the working folder.
    started_in = set_invocation_folder(Path.cwd())
    _absolute_outputs(args)
    with standard_output_for_data_alone(active=to_stderr):
        before = ProcessState()
        try:
            return _run_command(args, console, errors)
        finally:
            changes = before.changes()
            if changes:
                _say(errors, f"WARNING: {warning_text([_model_of(args)], changes)}")
            set_invocation_folder(started_in)


def _absolute_outputs(args: argparse.Namespace) -> None:
    """Make the command's own file flags (``--json``, ``--plot``, ``--out``) absolute, relative to the invocation
    folder (``--json -`` is standard output, not a file)."""
    for name in ("json", "plot", "out"):
        path = getattr(args, name, None)
        if path is not None and path != STDOUT:
            setattr(args, name, absolute(path))


def _model_of(args: argparse.Namespace) -> str:
    """The model a command ran, as its warnings name it: the flag's, else the configuration's.

    The options the command resolved (:func:`run_options`), not resolved again: after the model's code ran, the
    working folder may have moved (another configuration file found) and Ray would be probed a second time.
    """
    if args.command == "reproduce":
        return str(args.model)
    options: RunOptions | None = getattr(args, "resolved_options", None)
    if options is not None:
        return options.model
    return str(getattr(args, "model", None) or "reference")  # options the run refused: the flag as given


def _run_command(args: argparse.Namespace, console: Console, errors: Console) -> int:
    """Run the chosen command; its exit status, each error said in one line on ``errors``."""
    try:
        if args.command == "sweep":
            return run_sweep_command(args, console)
        if args.command in ("check", "compare"):
            return run_check_command(args, console)
        if args.command == "fuzz":
            return run_fuzz_command(args, console)
        if args.command == "reproduce":
            return run_reproduce_command(args, console)
        if args.command == "forecast":
            return run_forecast_command(args, console)
        if args.command == "init":
            return init.run_init_command(args, console)
        if args.command == "baselines":
            return baselines.run_baselines_command(args, console)
    except ModelCrashed as crashed:  # the model's own error: one line, the traceback only when asked
        crash = crashed.crash
        if args.traceback:
            _say(errors, crash.traceback.rstrip() or "(no traceback: the process died without raising)")
        hint = "" if args.traceback or not crash.traceback else "; --traceback prints the whole traceback"
        _say(errors, f"trainstab: error: {crash.line()}{hint}")
        return EXIT_CRASHED
    except Inconclusive as error:  # trained, but cannot answer: neither a pass nor a failure
        _say(errors, f"trainstab: inconclusive: {error}")
        return EXIT_INCONCLUSIVE
    except TrainstabError as error:
        _say(errors, f"trainstab: error: {error}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _say(errors, "trainstab: interrupted (Ctrl-C); nothing more was written")
        return EXIT_INTERRUPTED
    except OSError as error:  # a write after training (a figure, a summary): the run did not finish its job
        where = f" {error.filename}" if error.filename else ""
        _say(errors, f"trainstab: could NOT write{where}: {error.strerror or error}")
        return EXIT_FAILED
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
