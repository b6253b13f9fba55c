"""The pytest plugin (registered through the ``pytest11`` entry point): hooks and fixtures only.

Options, ini keys, markers, the header, the session's state and the report
at the end. The work is in :mod:`trainstab.pytest_plugin.testing` (checks) and the library
below it; nothing this imports loads torch, so pytest start-up stays fast for
projects that install trainstab but run no stability test.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import re
import shutil
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from trainstab.cache.session_cache import CacheUse, check_private, make_session_folder
from trainstab.cache.sweep_cache import cache_counts, cache_notes
from trainstab.checks.registry import report_order
from trainstab.core.config import estimated_bytes
from trainstab.core.environment import light_environment
from trainstab.core.errors import ModelCrashed, TrainstabError, TrainstabWarning
from trainstab.core.files import WRITE_FAILED, FileWrite, check_folder_writable, write_files
from trainstab.core.hypothesis_profiles import register_profiles
from trainstab.core.ladder import width_configs
from trainstab.core.option_fields import INI_PREFIX
from trainstab.core.process_state import ProcessState, warning_text
from trainstab.core.ray_address import keep_local_ray_on_loopback
from trainstab.gate.against import BaseTrainer
from trainstab.gate.baseline import header_lines
from trainstab.gate.report import write_report
from trainstab.gate.verdict import Verdict
from trainstab.pytest_plugin.session import (
    CURRENT_ITEM,
    CURRENT_TOKEN_KEY,
    PAYLOAD_KEY,
    SESSION_KEY,
    Session,
    session_of,
)
from trainstab.pytest_plugin.testing import TrainingCrashed, sweep_of, train_ahead, train_before_the_check
from trainstab.run.inifile import SET_KEY, ini_of
from trainstab.run.options import (
    OPTIONS,
    PYTEST_FLAGS,
    ModelUnderTest,
    RunOptions,
    options_from,
    paired_rule,
    policy_from,
    run_seed,
    sweep_config,
    with_absolute_paths,
)

# Registered, never loaded: --hypothesis-profile trainstab-nightly works, and no other test's settings change.
register_profiles()

SESSION_ENV = "TRAINSTAB_SESSION"  # shared by the controller and its xdist workers
COLLECTOR_NAME = "trainstab-verdicts"  # the VerdictCollector's name in the session's plugin manager


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--trainstab-*`` options and the matching ini keys."""
    group = parser.getgroup("trainstab", "training-stability checks (trainstab)")
    for option in OPTIONS:
        help_text = option.described()
        bare = {"nargs": "?", "const": option.bare} if option.bare is not None else {}  # --trainstab-against
        group.addoption(
            PYTEST_FLAGS + option.name, dest=option.key, default=None, help=f"{help_text} [ini: {option.key}]", **bare
        )
        # No ini type: pytest checks one only in getini, which trainstab does not call. Both front ends read the
        # keys from pytest's own load of the file (trainstab.run.inifile), as the file types them, and the option
        # table checks them: no pytest type takes what a TOML file may hold here, such as [32, 48, 64].
        parser.addini(option.key, help=help_text, default=None)
    group.addoption(
        PYTEST_FLAGS + "set",
        dest=SET_KEY,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a model or training option for every trainstab test (repeatable) [ini: {SET_KEY}]",
    )
    parser.addini(SET_KEY, type="linelist", help="KEY=VALUE overrides, one per line", default=[])
    group.addoption(
        PYTEST_FLAGS + "update-baseline",
        dest=INI_PREFIX + "update_baseline",
        action="store_true",
        help="rewrite the baselines that are missing, worse or measured differently (and pass); keeps the others",
    )
    group.addoption(
        PYTEST_FLAGS + "regen-all",
        dest=INI_PREFIX + "regen_all",
        action="store_true",
        help="rewrite every baseline of the checks that run (and pass)",
    )


def read_options(config: pytest.Config) -> RunOptions:
    """Every trainstab option, from the command line or else the session's pytest configuration, typed.

    The configuration is the file and rootdir pytest chose (:func:`trainstab.run.inifile.ini_of`), read as
    ``trainstab check`` reads it. Raises :class:`pytest.UsageError` naming the option and what was expected.
    """
    given = {option.name: config.getoption(option.key) for option in OPTIONS}
    try:
        options = options_from(given, ini_of(config), config.getoption(SET_KEY), PYTEST_FLAGS)
        # Every path absolute before any model's code runs (a model module may change the working folder): a
        # relative baseline or cache folder is relative to pytest's rootdir, wherever pytest was started; a
        # report folder or corpus, to the folder pytest was started in.
        rootdir = Path(config.rootpath)
        options = dataclasses.replace(
            with_absolute_paths(options, config.invocation_params.dir, {"baselines": rootdir, "cache": rootdir}),
            update_baseline=config.getoption(INI_PREFIX + "update_baseline"),
            regen_all=config.getoption(INI_PREFIX + "regen_all"),
        )
        policy_from(options)  # a rewrite flag without a baseline folder fails now, not in every test
    except TrainstabError as error:
        raise pytest.UsageError(str(error)) from None
    return options


def pytest_configure(config: pytest.Config) -> None:
    """Markers, validated options, and the session (its cache folder shared with xdist workers)."""
    config.addinivalue_line("markers", "trainstab: a training-stability test (trains tiny models)")
    if not config.pluginmanager.hasplugin("xdist"):  # case() groups each model's checks; harmless without xdist
        config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's worker group (xdist is not active)")
    options = read_options(config)
    if options.executor == "ray":  # before any model's code, which may import Ray and start one itself
        keep_local_ray_on_loopback()
    is_worker = hasattr(config, "workerinput")
    if not is_worker:
        try:  # before any training: a wrong folder costs seconds, not a sweep
            if options.report is not None:
                check_folder_writable(Path(options.report), options.flag("report"))
            if options.cache is not None:
                check_folder_writable(Path(options.cache), options.flag("cache"))
            policy_from(options)  # a baseline folder that is a file, or one a rewrite cannot write
        except TrainstabError as error:
            raise pytest.UsageError(str(error)) from None
    try:
        folder, made_here = _session_folder(config)
    except TrainstabError as error:
        raise pytest.UsageError(str(error)) from None
    session = Session(options, folder, os.environ.get(SESSION_ENV), made_here, is_worker)
    config.stash[SESSION_KEY] = session
    if options.against is None and config.getoption(INI_PREFIX + "against_seeds") is not None:
        raise pytest.UsageError(
            "--trainstab-against-seeds sets how many seeds --trainstab-against trains, and --trainstab-against is "
            "not given"
        )
    if options.against is not None:  # resolved now: a revision that does not exist stops the run before training
        try:
            flag = options.flag("against")
            session.base = BaseTrainer(config.rootpath, options.against, options.cache, flag, shared=folder)
        except TrainstabError as error:
            raise pytest.UsageError(str(error)) from None
    if not is_worker:  # workers started later inherit the folder's path through the environment too
        os.environ[SESSION_ENV] = str(folder)
        config.pluginmanager.register(VerdictCollector(session), COLLECTOR_NAME)


def _session_folder(config: pytest.Config) -> tuple[Path, bool]:
    """This process's sweep cache folder, and whether this process made it."""
    handed = getattr(config, "workerinput", {}).get("trainstab_session") or os.environ.get(SESSION_ENV)
    if hasattr(config, "workerinput") and handed:  # the controller's folder (a remote worker: if it is here)
        try:
            return check_private(Path(handed)), False
        except TrainstabError:
            pass  # not on this machine or not ours: this worker caches on its own
    return make_session_folder(), True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(pytest-xdist, controller) Hand each worker the session folder, also where the environment does not reach."""
    node.workerinput["trainstab_session"] = str(session_of(node.config).folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's sweep cache (the controller's, or a worker's own), and restore the environment."""
    if SESSION_KEY not in config.stash:
        return
    session = config.stash[SESSION_KEY]
    if session.base is not None:  # the base's checkout, if this process made one (also after Ctrl-C)
        session.base.close()
    collector = config.pluginmanager.get_plugin(COLLECTOR_NAME)
    if collector is not None:
        config.pluginmanager.unregister(collector)
    if session.made_folder:  # the controller's, or a worker's own when the controller's was out of reach
        shutil.rmtree(session.folder, ignore_errors=True)
    if not session.is_worker:
        if session.previous_env is None:
            os.environ.pop(SESSION_ENV, None)
        else:  # a session run inside another (pytester): the outer one's workers still need theirs
            os.environ[SESSION_ENV] = session.previous_env


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The seed and default model, and the baselines (with a warning if recorded elsewhere).

    The models the collected checks name are listed after collection (:func:`pytest_report_collectionfinish`).
    """
    options = session_of(config).options
    lines = [f"trainstab: seed={run_seed(options)} default model={options.model}{options.overrides_shown()}"]
    if options.widths:  # a ladder of the user's: what its largest rung will need, before anything trains
        try:
            rung = width_configs(sweep_config(options, ModelUnderTest()), [max(options.widths)])[0]
        except TrainstabError:
            pass  # a width the ladder refuses: its checks say why
        else:
            lines.append(
                f"trainstab: width ladder {','.join(map(str, options.widths))}: about "
                f"{estimated_bytes(rung) / 2**30:.2g} GiB for width {rung.model.width} (the largest rung)"
            )
    base = session_of(config).base
    if base is not None:
        seeds = paired_rule(options).seeds
        lines.append(f"trainstab: against {base.name}: {seeds} seeds on each side, from seed {run_seed(options)}")
    return lines + [f"trainstab: {line}" for line in header_lines(options)]


#: Said once at the end of a ``--dist loadgroup`` run in which one group's checks ran on several workers (see
#: :func:`spread_groups`); under pytest 9.2 with pytest-xdist 3.8 every group does (pytest-xdist issue #1386).
GROUPS_SPREAD = (
    "--dist loadgroup did not keep each model's checks on one worker (pytest {pytest}, pytest-xdist {xdist}): "
    "{groups} ran on several, and each waited for the one training its sweep; the verdicts are right, the run is "
    "slower."
)
GROUPS_SPREAD_FIX = (
    " pytest 9.2 drops the group pytest-xdist gives each test (pytest-xdist issue #1386): install 'pytest<9.2' "
    "until pytest-xdist releases its fix."
)


def xdist_group_of(item: pytest.Item) -> str:
    """The group pytest-xdist's ``--dist loadgroup`` sends to one worker: the names of the item's ``xdist_group``
    marks, sorted and joined by ``_`` ("" for none)."""
    names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    return "_".join(sorted(names))


def spread_groups(workers_of: dict[str, set[str]]) -> list[str]:
    """The groups whose checks ran on more than one worker (``workers_of``: group -> the workers that ran them)."""
    return sorted(group for group, workers in workers_of.items() if len(workers) > 1)


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """The models the collected checks will train, each once however many checks name it."""
    options = session_of(config).options
    labels: dict[str, None] = {}  # ordered, unique
    for item in items:
        target = getattr(item, "callspec", None) and item.callspec.params.get("model")  # type: ignore[attr-defined]
        if isinstance(target, ModelUnderTest):
            labels[target.label(options)] = None
    return [f"trainstab: checking {len(labels)} model(s): {', '.join(labels)}"] if labels else []


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """On the Ray executor, train every sweep the collected checks read as one batch, before the first test.

    Not when nothing will run (``--collect-only``, collection errors): and a batch that fails is reported in one
    line and left to the tests, each of which then trains its own sweep and reports its own error.
    """
    if session.config.option.collectonly or not session.items or session.testsfailed:
        return
    if session_of(session.config).options.executor != "ray":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    before = ProcessState()
    try:
        asked = train_ahead(session.config, session.items)
    except (TrainstabError, ModelCrashed) as error:  # a crash too: each case then errors with its own line
        line = f"trainstab: training ahead on Ray failed ({error}); each test trains its own sweep"
    else:
        line = f"trainstab: trained {asked} sweep(s) as one batch of Ray tasks, ahead of the tests" if asked else ""
    if reporter is not None and line:
        reporter.write_line(line)
    changes = before.changes()  # outside any test: a line, naming every model the batch trained
    if reporter is not None and changes:
        models = sorted({_model_of(item) for item in session.items if _model_of(item) != item.nodeid})
        reporter.write_line(f"trainstab: WARNING: {warning_text(models or ['?'], changes)}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Let checks find the running test (to attach their verdicts to its report), from its fixtures on; after
    the fixtures, train what a check will read, so a model that crashes errors the test (in setup)."""
    item.stash[CURRENT_TOKEN_KEY] = CURRENT_ITEM.set(item)
    yield
    before = ProcessState()  # after the fixtures: a test's own chdir (monkeypatch.chdir) is not the model's
    try:
        train_before_the_check(item)
    finally:
        changes = before.changes()
        if changes:
            warnings.warn(TrainstabWarning(warning_text([_model_of(item)], changes)), stacklevel=1)


def _model_of(item: pytest.Item) -> str:
    """The model a trainstab case trains, as the run labels it (its test id outside a case)."""
    target = getattr(getattr(item, "callspec", None), "params", {}).get("model")
    return target.label(session_of(item.config).options) if isinstance(target, ModelUnderTest) else item.nodeid


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Forget the finished test, after its fixtures are torn down (an outer pytester test is the current again)."""
    token = item.stash.get(CURRENT_TOKEN_KEY, None)
    if token is not None:
        CURRENT_ITEM.reset(token)
        del item.stash[CURRENT_TOKEN_KEY]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Carry a check's full row and its files to write on the call report (xdist sends it to the controller)."""
    report = yield
    payloads = item.stash.get(PAYLOAD_KEY, [])
    if call.when == "call" and payloads:
        report.trainstab = payloads
        report.trainstab_group = xdist_group_of(item)  # the controller sees where each group ran
    if call.when == "call" and report.failed and call.excinfo is not None:
        # An error (pytest_report_teststatus): also a crash met under @given, where assert_stable trains.
        report.trainstab_crashed = call.excinfo.errisinstance((TrainingCrashed, ModelCrashed))
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    """A model that crashed in the test itself (``trainstab_sweep``, a check outside its case) is an error,
    as one that crashes while its case trains in setup is: never a failed check."""
    if report.when == "call" and report.failed and getattr(report, "trainstab_crashed", False):
        return "error", "E", "ERROR"
    return None


class VerdictCollector:
    """The controller's (or a run without xdist's) collector of verdicts, registered per session.

    A plugin object rather than a module hook: pytest_runtest_logreport gets no config, and this keeps each
    session's verdicts on its own :class:`Session`. Workers only decide; every file is written here, in one
    process, so parallel runs never race on a baseline.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect the verdicts a test's call reported, and write the baselines and ``.obtained`` files it decided."""
        payloads = getattr(report, "trainstab", None)
        if report.when != "call" or not payloads:
            return
        worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", None)  # set by pytest-xdist
        group = getattr(report, "trainstab_group", "")
        if worker is not None and group:
            self.session.workers_of.setdefault(group, set()).add(worker)
        for payload in payloads:
            verdict = Verdict.from_json(payload["row"])
            # A known-unstable model failing as declared: not a failure of the run.
            self.session.verdicts.append(dataclasses.replace(verdict, expected_to_fail=hasattr(report, "wasxfail")))
            if "curves" in payload:
                self.session.curves[verdict.label] = payload["curves"]
            self.session.cache_uses.extend(CacheUse(**event) for event in payload.get("cache", []))
            if payload["writes"]:
                writes = [FileWrite(**w) for w in payload["writes"]]
                self.session.written.extend(write_files(writes, self.session.options.flags))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller writes the report folder, if asked (``--trainstab-report DIR``, relative to the cwd).

    A file the run could not write (a baseline, the report) makes the run fail: it never reports success.
    """
    state = session_of(session.config)
    _write_report(session, state)
    unwritten = any(line.startswith(WRITE_FAILED) for line in state.written)
    if not state.is_worker and unwritten and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _write_report(session: pytest.Session, state: Session) -> None:
    """Write the report folder when one was asked for (controller only)."""
    folder = state.options.report
    if folder is None or state.is_worker or not state.verdicts:
        return
    seed = run_seed(state.options)
    # Interrupted (Ctrl-C), stopped at a failure (-x, --maxfail) or ended by an internal error: the report is partial.
    stopped = bool(session.shouldstop or session.shouldfail)  # Ctrl-C, -x, --maxfail
    complete = session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not stopped
    header = {"seed": seed, "complete": complete, "environment": light_environment(seed)}
    try:
        written = write_report(Path(folder), state.verdicts, dict(state.curves), header)
    except OSError as error:
        state.written.append(f"{WRITE_FAILED} the report in {folder} ({error.strerror or error}); check that folder")
    else:
        state.written.append(f"wrote {written[-1]} (report: {len(written)} files)")


@pytest.fixture
def trainstab_sweep(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """A function returning this session's (cached) sweep of a model.

    ``trainstab_sweep()`` sweeps the run's model; ``trainstab_sweep("reference",
    "qk_layernorm=false")`` a model with overrides. Returns a SweepResult.
    """

    def sweep(model: str | None = None, *overrides: str) -> Any:
        return sweep_of(request.config, ModelUnderTest(model, tuple(overrides)))

    return sweep


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One row per model and check (value, bound, baseline, verdict), then every file the run wrote."""
    state = session_of(terminalreporter.config)
    if not state.verdicts and not state.written:
        return
    if state.options.cache is not None:
        uses = [use for use in state.cache_uses if not use.session]
        read, kept, unkept = cache_counts(uses)
        cache_line = f"trainstab: cache {state.options.cache}: {read} sweep(s) read, {kept} trained and kept"
        cache_line += f", {unkept} trained but not kept" if unkept else ""
    terminalreporter.section("trainstab summary")
    terminalreporter.write_line(f"{'model':<36} {'check':<18} {'value':>10} {'bound':>10} {'baseline':<12} verdict")
    shown = {"off": "-", "not gated": "-"}  # baselines off, or a check without baselines
    for verdict in sorted(state.verdicts, key=lambda v: (v.label, report_order(v.check))):
        row = verdict.to_json()
        value, bound = (f"{x:>10.4g}" if x is not None else f"{'-':>10}" for x in (row["value"], row["bound"]))
        status = shown.get(verdict.status, verdict.status)
        terminalreporter.write_line(
            f"{verdict.label:<36} {verdict.check:<18} {value} {bound} {status:<12} {verdict.verdict}"
        )
    _paired_rows(terminalreporter, state.verdicts)
    for verdict in state.verdicts:
        if verdict.verdict == "warn":  # report-only checks pass their test; say why they are over
            terminalreporter.write_line(f"trainstab: warn {verdict.label} {verdict.check}: {verdict.why}")
    for line in state.written:
        terminalreporter.write_line(f"trainstab: {line}")
    if state.options.cache is not None:
        terminalreporter.write_line(cache_line)
    for note in cache_notes(str(state.options.cache), state.cache_uses):  # what the counts do not say
        terminalreporter.write_line(f"trainstab: {note}")
    _say_groups_spread(terminalreporter, state)


def _say_groups_spread(terminalreporter: Any, state: Session) -> None:
    """One line when ``--dist loadgroup`` was asked for and a group's checks ran on several workers."""
    spread = spread_groups(state.workers_of)
    if not spread or terminalreporter.config.getoption("dist", None) != "loadgroup":
        return
    shown = ", ".join(spread[:3]) + (f" and {len(spread) - 3} more" if len(spread) > 3 else "")
    line = GROUPS_SPREAD.format(pytest=pytest.__version__, xdist=_version("pytest-xdist"), groups=shown)
    if _major_minor(pytest.__version__) >= (9, 2):  # the known cause; another cause has no fix to name
        line += GROUPS_SPREAD_FIX
    terminalreporter.write_line(f"trainstab: WARNING: {line}")


def _major_minor(version: str) -> tuple[int, int]:
    """``(9, 2)`` for "9.2.0" or "9.2.0.dev340+g6a0de9be5"; ``(0, 0)`` for a version that does not start so."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def _version(distribution: str) -> str:
    """An installed distribution's version ("?" when its metadata cannot be read)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _paired_rows(terminalreporter: Any, verdicts: list[Verdict]) -> None:
    """With ``--trainstab-against``: per model and check, the base and the head side by side (the statistic where
    it is closest to its band), the paired difference, its band and the call."""
    paired = [v for v in sorted(verdicts, key=lambda v: (v.label, report_order(v.check))) if v.paired is not None]
    if not paired:
        return
    first = paired[0].paired
    assert first is not None
    seeds = ",".join(map(str, first.seeds))
    terminalreporter.write_line(f"trainstab: against {first.against}, seeds {seeds} on each side (means):")
    header = f"{'model':<36} {'check':<18} {'lr':>6} {'base':>9} {'head':>9} {'difference':>12} {'band':>10} vs base"
    terminalreporter.write_line(header)
    for verdict in paired:
        comparison = verdict.paired
        assert comparison is not None
        worst = comparison.worst
        lr, base, head, moved, band = worst.cells() if worst is not None else ("-",) * 5
        terminalreporter.write_line(
            f"{verdict.label:<36} {verdict.check:<18} {lr:>6} {base:>9} {head:>9} {moved:>12} {band:>10} "
            f"{comparison.status}"
        )
    said = {  # once per model and reason, not once per check
        f"trainstab: {verdict.label}: {verdict.paired.message()}": None
        for verdict in paired
        if verdict.paired is not None and verdict.paired.status == "not compared"
    }
    for line in said:
        terminalreporter.write_line(line)
