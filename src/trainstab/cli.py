"""The ``trainstab`` command line.

    trainstab sweep [--model reference] [--set key=value ...] [--lrs 1e-3,1e-2]
                    [--steps N] [--seed N] [--corpus FILE] [--json PATH]
    trainstab check [the pytest plugin's options without --trainstab-] [--report DIR]
                    [--baselines DIR [--update-baseline | --regen-all]]
    trainstab fuzz | reproduce | forecast ...

Exit status: 0 on success, 1 when a check (or forecast) fails, 2 on bad input
(a one-line message, no traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trainstab.config import SweepConfig, int_list, lr_list
from trainstab.errors import TrainstabError
from trainstab.files import WRITE_FAILED, check_folder_writable
from trainstab.inifile import read_ini
from trainstab.options import CHECK_NAMES, OPTIONS, decades, expected, positive, positive_int, seed, steps
from trainstab.overrides import apply_overrides

if TYPE_CHECKING:
    from trainstab.sweep import SweepResult

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT
EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"trainstab: error: {message} (see {self.prog} --help)\n")


def _lrs(text: str) -> tuple[float, ...]:
    """Parse ``--lrs 1e-3,3e-3``."""
    try:
        return lr_list(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--lrs {text!r}: expected comma-separated numbers such as 1e-3,1e-2"
        ) from None


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser of the shared option table, with its "expected ..." wording."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected(parse)}") from None

    convert.__name__ = parse.__name__
    return convert


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="trainstab", description="Small-scale proxies for large-scale training instabilities.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sweep = commands.add_parser("sweep", help="train one tiny model per learning rate and report stability")
    sweep.add_argument(
        "--model",
        default=None,
        help="reference (default), hf:<model_type>, or a factory package.module:callable taking a ModelSize",
    )
    sweep.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model or training option, e.g. --set qk_layernorm=false (repeatable)",
    )
    sweep.add_argument("--lrs", type=_lrs, help="comma-separated peak learning rates (default: the paper's grid)")
    sweep.add_argument("--steps", type=_typed(steps), help="optimizer steps per run (default: 200)")
    sweep.add_argument("--seed", type=_typed(seed), help="seed of the init and the data order (default: 0)")
    sweep.add_argument("--corpus", help="token file (.npy or uint16 .bin) instead of the bundled corpus")
    sweep.add_argument("--workers", type=_typed(positive_int), help="worker processes (default: one per core)")
    sweep.add_argument("--json", type=Path, help="write every metric, the config and the environment here")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    check = commands.add_parser(
        "check", help="the whole battery on one model, held to its baselines: exit 1 if a check fails"
    )
    for option in OPTIONS:  # the plugin's options, without the --trainstab- prefix
        default = f" (default: {option.default})" if option.default is not None else ""
        metavar = option.name.upper().replace("-", "_")  # --max-lr MAX_LR, not the dict key TRAINSTAB_MAX_LR
        help_text = option.help + default
        check.add_argument(f"--{option.name}", dest=option.key, default=None, metavar=metavar, help=help_text)
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a model or training option, e.g. --set qk_layernorm=false")  # fmt: skip
    check.add_argument("--checks", default=",".join(CHECK_NAMES), help="comma-separated checks (default: all)")
    rewrite = check.add_mutually_exclusive_group()
    rewrite.add_argument("--update-baseline", action="store_true", help="rewrite missing or failing baselines")
    rewrite.add_argument("--regen-all", action="store_true", help="rewrite every baseline")
    check.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    fuzz = commands.add_parser("fuzz", help="search hyperparameters for unstable regions and map them")
    fuzz.add_argument("--model", default=None, help="reference (default), hf:<model_type> or a factory")
    fuzz.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fixed model or training option for every example, e.g. --set qk_layernorm=false",
    )
    fuzz.add_argument("--budget", type=_typed(positive_int), default=40, help="examples to train (default: 40)")
    fuzz.add_argument("--seed", type=_typed(seed), default=None, help="seed of the search and every run (default 0)")
    fuzz.add_argument("--max-lr", type=_typed(positive), default=1.0, help="largest LR explored (default: 1.0)")
    fuzz.add_argument("--json", type=Path, help="write every explored point and the map here")
    fuzz.add_argument("--plot", type=Path, help="write the map as a PNG here")
    fuzz.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    reproduce = commands.add_parser("reproduce", help="run the paper's findings at proxy scale: PNGs and a summary")
    reproduce.add_argument("--out", type=Path, default=Path("trainstab-findings"), help="output folder")
    reproduce.add_argument("--quick", action="store_true", help="fewer steps and sizes: about 4 minutes on 2 cores")
    reproduce.add_argument("--seed", type=_typed(seed), default=0, help="seed of every run (default: 0)")
    reproduce.add_argument(
        "--model",
        default="reference",
        help="the model to run the findings on (default: reference); on your own model, the findings that flip "
        "a switch of the reference are skipped and listed",
    )
    reproduce.add_argument("--only", default="", help="comma-separated findings to run (default: all)")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    forecast = commands.add_parser("forecast", help="forecast attention logits and gradient RMS at a target size")
    forecast.add_argument("--model", default=None, help="reference (default), hf:<model_type> or a factory")
    forecast.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="model or training option, e.g. --set qk_layernorm=false")  # fmt: skip
    forecast.add_argument("--target-params", type=_typed(positive), default=None,
                          help="target non-embedding parameters (1e9)")  # fmt: skip
    forecast.add_argument("--widths", default="32,48,64", help="width ladder (at least 3; default 32,48,64)")
    forecast.add_argument("--max-extrapolation", type=_typed(decades), default=None, metavar="DECADES",
                          help="decades past the largest width the attention forecast goes (default 2)")  # fmt: skip
    forecast.add_argument("--steps", type=_typed(steps), help="optimizer steps per run (default: 200)")
    forecast.add_argument("--seed", type=_typed(seed), help="seed of the init and the data order (default: 0)")
    forecast.add_argument("--fit", choices=("power", "quadratic"), default="power",
                          help="power law (default) or the paper's quadratic in log space (4+ widths)")  # fmt: skip
    forecast.add_argument("--max-lr", type=_typed(positive), default=0.3,
                          help="largest LR of the grid forecast (default 0.3)")  # fmt: skip
    forecast.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    return parser


def sweep_config(args: argparse.Namespace) -> SweepConfig:
    """The sweep configuration the command line asks for."""
    config = apply_overrides(SweepConfig(model_name=args.model), args.overrides)
    train_changes = {k: v for k, v in (("steps", args.steps), ("seed", args.seed)) if v is not None}
    return dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, **train_changes),
        lrs=getattr(args, "lrs", None) or config.lrs,
        corpus=getattr(args, "corpus", None),
        workers=getattr(args, "workers", None),
    )


def run_sweep_command(args: argparse.Namespace, console: Console) -> int:
    """``trainstab sweep``: run, print the table, optionally write JSON."""
    from trainstab.report import check_writable, sweep_table, sweep_to_dict, write_json
    from trainstab.sweep import preflight, run_sweep

    config = sweep_config(args)
    preflight(config)  # before the header; run_sweep's own preflight then hits check_model's memo
    if args.json is not None:
        check_writable(args.json)  # before minutes of training, not after
    console.print(
        f"trainstab sweep: model={args.model} seed={config.train.seed} lrs={','.join(f'{x:g}' for x in config.lrs)}"
    )
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=args.no_progress) as bar:
        task = bar.add_task("sweep", total=None)
        result = run_sweep(config, lambda done, total: bar.update(task, completed=done, total=total))
    console.print(sweep_table(result))
    if args.json is not None:
        previous = write_json(args.json, sweep_to_dict(result))
        console.print(f"wrote {args.json}" + (f" (the file it replaced is now {previous})" if previous else ""))
    return 0


def run_check_command(args: argparse.Namespace, console: Console) -> int:
    """``trainstab check``: train the sweep, run the battery, compare with baselines, print the table."""
    from trainstab.checks import BATTERY, run_check
    from trainstab.environment import light_environment
    from trainstab.gate import ModelUnderTest, baseline_header, gate, policy_from, sweep_config, thresholds, write_files
    from trainstab.gatereport import gate_row, model_curves, write_report
    from trainstab.options import parse_options
    from trainstab.sweep import preflight, run_sweep

    ini = read_ini()  # the pytest configuration's trainstab_* keys: one configuration for both front ends
    raw: dict[str, tuple[str, Any]] = {}
    for option in OPTIONS:
        flag = getattr(args, option.key)
        if flag is None and option.key in ini.values:
            raw[option.key] = (f"{option.key} in {ini.name}", ini.values[option.key])
        else:
            raw[option.key] = (f"--{option.name}", flag)
    source = f"--set / trainstab_set in {ini.name}" if ini.overrides else "--set"
    options = parse_options(raw, [*ini.overrides, *args.overrides], source)
    if args.trainstab_baselines is None and options["trainstab_baselines"] is not None:  # relative to the file
        options["trainstab_baselines"] = str(ini.folder / options["trainstab_baselines"])
    options["trainstab_update_baseline"], options["trainstab_regen_all"] = args.update_baseline, args.regen_all
    checks = [name.strip() for name in args.checks.split(",") if name.strip()]
    unknown = [name for name in checks if name not in BATTERY]
    if unknown or not checks:
        raise TrainstabError(f"--checks {args.checks!r}: unknown check(s) {unknown}; choose from {', '.join(BATTERY)}")
    policy = policy_from(options)
    target = ModelUnderTest(options["trainstab_model"])
    label = target.label(options)
    config = sweep_config(options, target)
    preflight(config)
    report = Path(options["trainstab_report"]) if options["trainstab_report"] is not None else None
    if report is not None:
        check_folder_writable(report, "--report")
    seed = config.train.seed
    console.print(
        f"trainstab check: model={label} seed={seed} steps={config.train.steps} "
        f"lrs={','.join(f'{x:g}' for x in config.lrs)}",
        soft_wrap=True,
    )
    if ini.path is not None and (ini.values or ini.overrides):
        console.print(f"configuration: {ini.name} (flags on the command line win)", markup=False, soft_wrap=True)
    for line in baseline_header(options):
        console.print(for_cli(line), markup=False, highlight=False, soft_wrap=True)
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=args.no_progress) as bar:
        task = bar.add_task("sweep", total=None)
        sweep = run_sweep(config, lambda done, total: bar.update(task, completed=done, total=total))
    bounds = thresholds(options)
    rows, written, failures = [], [], []
    for name in checks:
        gated = gate(label, name, run_check(name, sweep, bounds), sweep, bounds, policy)
        written += write_files(gated.writes)
        row = gate_row(gated, list(BATTERY).index(name), seed)
        row["message"], row["baseline"]["message"] = for_cli(row["message"]), for_cli(row["baseline"]["message"])
        rows.append(row)
        if not gated.passed:
            failures.append(for_cli(f"FAIL {name}: {gated.failure}"))
        elif gated.verdict == "warn":  # report-only: shown with its reason, never failing the run
            failures.append("warn " + for_cli(f"{name}: " + "\n".join(filter(None, (row["message"], gated.message)))))
    console.print(check_table(rows, sweep.elapsed_seconds))
    for failure in failures:
        console.print(failure, markup=False, highlight=False, soft_wrap=True)
    if report is not None:
        try:
            header = {"seed": seed, "environment": light_environment(seed)}
            files = write_report(report, rows, {label: model_curves(label, sweep)}, header)
        except OSError as error:
            written.append(f"{WRITE_FAILED} the report in {report} ({error.strerror or error}); check that folder")
        else:
            written.append(f"wrote {files[-1]} (report: {len(files)} files)")
    for line in written:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    failed = sum(not row["passed"] for row in rows)
    warned = sum(row["verdict"] == "warn" for row in rows)
    unwritten = sum(line.startswith(WRITE_FAILED) for line in written)
    verdict = f"{failed} of {len(rows)} checks failed" if failed else f"all {len(rows)} checks passed"
    if unwritten:  # never report success when a file the run owed was not written
        verdict += f", but {unwritten} file(s) could not be written (above)"
    console.print(verdict + (f" ({warned} report-only warning(s) above)" if warned else ""))
    return EXIT_FAILED if failed or unwritten else 0


def for_cli(text: str) -> str:
    """A message written with the plugin's flags, naming this command's: ``--trainstab-<name>`` is ``--<name>``."""
    return text.replace("--trainstab-", "--")


def check_table(rows: list[dict[str, Any]], seconds: float) -> Table:
    """The battery's verdicts: one row per check with value, bound, baseline status and verdict."""
    table = Table(title="trainstab check", caption=f"sweep {seconds:.1f} s")
    for column, justify in (("check", "left"), ("value", "right"), ("bound", "right"), ("baseline", "left"),
                            ("verdict", "left")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        number = [f"{x:.4g}" if x is not None else "-" for x in (row["value"], row["bound"])]
        style = {"FAIL": "red", "warn": "yellow"}.get(row["verdict"])
        table.add_row(row["check"], *number, row["baseline"]["status"], row["verdict"], style=style)
    return table


def run_fuzz_command(args: argparse.Namespace, console: Console) -> int:
    """``trainstab fuzz``: explore LR x width x warm-up, print the map, write JSON and PNG."""
    from trainstab.config import validate
    from trainstab.files import keep_previous
    from trainstab.fuzz import FUZZ_STEPS, explore
    from trainstab.fuzzmap import fuzz_to_dict, lr_boundary, plot_map
    from trainstab.models import check_model
    from trainstab.report import check_writable, write_json
    from trainstab.strategies import stability_region

    base = apply_overrides(SweepConfig(model_name=args.model), args.overrides)
    validate(base)
    # The map's axes vary (LR, width, warm-up); everything else is held at the --set values.
    m, t = base.model, base.train
    region = stability_region(
        lr=(1e-3, args.max_lr), widths=(16, 32, 64), heads=(m.heads,), warmup_fraction=(0.0, 0.3),
        qk_layernorm=(m.qk_layernorm,), norm_placement=(m.norm_placement,), z_loss=(t.z_loss,),
        eps=(t.eps, t.eps), depth=(m.depth, m.depth), init_scale=(m.init_scale, m.init_scale),
        weight_decay_mode=(t.weight_decay_mode,), beta2=(t.beta2, t.beta2), grad_clip=(t.grad_clip, t.grad_clip),
        batch_size=(t.batch_size, t.batch_size),
    )  # fmt: skip
    check_model(args.model, base.model, args.seed)
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None:
            check_writable(path, flag)
    console.print(f"trainstab fuzz: model={args.model} seed={args.seed} budget={args.budget} steps={FUZZ_STEPS}")
    columns = (TextColumn("exploring"), BarColumn(), MofNCompleteColumn(), TextColumn("examples"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=args.no_progress) as bar:
        task = bar.add_task("fuzz", total=args.budget)
        outcomes = explore(region, args.budget, args.model, args.seed, base=base,
                           progress=lambda done, total: bar.update(task, completed=done))  # fmt: skip
    data = fuzz_to_dict(outcomes, args.model, args.seed, args.budget, FUZZ_STEPS)
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
        previous = write_json(args.json, data)
        console.print(f"wrote {args.json}" + (f" (the file it replaced is now {previous})" if previous else ""))
    if args.plot is not None:
        previous = keep_previous(args.plot)
        plot_map(outcomes, args.plot, f"trainstab fuzz: {args.model} {' '.join(args.overrides)} (seed {args.seed})")
        console.print(f"wrote {args.plot}" + (f" (the file it replaced is now {previous})" if previous else ""))
    unstable = sum(causes.values())
    if unstable:  # like `trainstab check`: a script or CI job can gate on the map
        console.print(f"{unstable} unstable point(s) found: exit {EXIT_FAILED}")
        return EXIT_FAILED
    return 0


def run_reproduce_command(args: argparse.Namespace, console: Console) -> int:
    """``trainstab reproduce``: every finding, one PNG each, a Markdown summary."""
    from trainstab.reproduce import reproduce

    only = tuple(key.strip() for key in args.only.split(",") if key.strip())
    mode = "quick" if args.quick else "full"
    console.print(f"trainstab reproduce: {mode} run, model={args.model}, seed={args.seed}, out={args.out}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=args.no_progress) as bar:
        task = bar.add_task("finding", total=None)

        def on_finding(key: str, index: int, total: int) -> None:
            bar.update(task, description=f"finding {key}", completed=index, total=total)

        result = reproduce(args.out, args.quick, args.seed, only, on_finding, model=args.model)
    for finding in result.results:
        verdict = {True: "held", False: "did NOT hold", None: "measured"}[finding.held]
        console.print(f"  {finding.key:<15} {verdict:<13} {finding.evidence}", soft_wrap=True)
    for key, why in result.skipped:
        console.print(f"  {key:<15} {'not run':<13} {why}", soft_wrap=True)
    console.print(f"wrote {len(result.files)} files to {args.out} in {result.elapsed_seconds:.0f} s")
    return 0


def run_forecast_command(args: argparse.Namespace, console: Console) -> int:
    """``trainstab forecast``: train the width ladder and forecast at ``--target-params``; exit 1 if flagged."""
    from trainstab.forecast import forecast_attention_logits, forecast_gradient_rms
    from trainstab.ladder import run_ladder, width_configs
    from trainstab.sweep import preflight, run_sweep

    config = sweep_config(args)
    try:
        widths = list(int_list(args.widths))
    except ValueError:
        raise TrainstabError(f"--widths {args.widths!r}: expected comma-separated integers such as 32,48,64") from None
    configs = width_configs(config, widths)
    if len(configs) < 3:
        raise TrainstabError(f"--widths {args.widths}: a forecast needs at least 3 distinct widths, e.g. 32,48,64")
    for rung in configs:
        preflight(rung)
    console.print(
        f"trainstab forecast: model={args.model} seed={config.train.seed} widths={widths} "
        f"target={args.target_params:.3g} parameters"
    )
    columns = (TextColumn("training width ladder"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=args.no_progress) as bar:
        task = bar.add_task("ladder", total=len(configs))

        def sweep(rung: SweepConfig) -> SweepResult:
            result = run_sweep(rung)
            bar.advance(task)
            return result

        ladder = run_ladder("width", configs, sweep)
    degree = 2 if args.fit == "quadratic" else 1
    attention = forecast_attention_logits(
        ladder, args.target_params, max_lr=args.max_lr, degree=degree, max_decades=args.max_extrapolation
    )
    gradients = forecast_gradient_rms(ladder, args.target_params, ratio_to_eps=10.0, max_lr=args.max_lr, degree=degree)
    console.print(for_cli(attention.describe()), markup=False, highlight=False, soft_wrap=True)
    console.print(for_cli(gradients.describe()), markup=False, highlight=False, soft_wrap=True)
    flagged = len(attention.flagged) + len(gradients.flagged)
    console.print(f"{flagged} LR(s) flagged" if flagged else "no LR flagged")
    return 1 if flagged else 0


#: Flags of sweep, fuzz and forecast that the pytest configuration's trainstab keys supply: (dest, ini key, default).
_FROM_INI = (
    ("model", "trainstab_model", "reference"),
    ("seed", "trainstab_seed", None),
    ("steps", "trainstab_steps", None),
    ("lrs", "trainstab_lrs", None),
    ("corpus", "trainstab_corpus", None),
    ("target_params", "trainstab_target_params", 1e9),
    ("max_extrapolation", "trainstab_max_extrapolation", None),  # None: trainstab.forecast's default
)


def with_configuration(args: argparse.Namespace) -> None:
    """Fill the flags not given on the command line from the pytest configuration file (``trainstab check``'s).

    ``--set`` adds to the file's ``trainstab_set`` lines, as in pytest. Parsed as the shared option table parses.
    """
    ini = read_ini()
    parsers = {option.key: option.parse for option in OPTIONS}
    for dest, key, default in _FROM_INI:
        if not hasattr(args, dest) or getattr(args, dest) is not None:
            continue
        value: Any = default
        if key in ini.values:
            try:
                value = parsers[key](ini.values[key])
            except ValueError:
                raw = ini.values[key]
                raise TrainstabError(f"{key} in {ini.name}={raw!r}: not a valid value for --{dest}") from None
        setattr(args, dest, value)
    if hasattr(args, "overrides"):
        args.overrides = [*ini.overrides, *args.overrides]
    if getattr(args, "seed", 0) is None and args.command == "fuzz":
        args.seed = 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainstab`` console script; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand, so the hint names its --help
        command = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
        command.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    console = Console()
    errors = Console(stderr=True)
    try:
        if args.command in ("sweep", "fuzz", "forecast"):
            with_configuration(args)
        if args.command == "sweep":
            return run_sweep_command(args, console)
        if args.command == "check":
            return run_check_command(args, console)
        if args.command == "fuzz":
            return run_fuzz_command(args, console)
        if args.command == "reproduce":
            return run_reproduce_command(args, console)
        if args.command == "forecast":
            return run_forecast_command(args, console)
    except TrainstabError as error:
        errors.print(f"trainstab: error: {for_cli(str(error))}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        errors.print("trainstab: interrupted (Ctrl-C); nothing more was written", markup=False, highlight=False)
        return EXIT_INTERRUPTED
    except OSError as error:  # a write after training (a figure, a summary): the run did not finish its job
        where = f" {error.filename}" if error.filename else ""
        errors.print(f"trainstab: could NOT write{where}: {error.strerror or error}", markup=False, highlight=False)
        return EXIT_FAILED
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
