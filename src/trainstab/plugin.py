"""The pytest plugin (registered through the ``pytest11`` entry point).

Kept thin on purpose: options, ini keys, markers and the header live here,
and nothing here imports torch, so pytest start-up stays fast for projects
that install trainstab but run no stability test. The work is in
:mod:`trainstab.testing`, imported when a trainstab test runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from trainstab.errors import TrainstabError
from trainstab.files import WRITE_FAILED, check_folder_writable
from trainstab.hypothesis_profiles import load_default_profile  # at import: before any conftest loads a profile
from trainstab.options import OPTIONS, parse_options
from trainstab.session_cache import check_private, make_session_folder

SESSION_ENV = "TRAINSTAB_SESSION"  # shared by the controller and its xdist workers


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--trainstab-*`` options and the matching ini keys."""
    group = parser.getgroup("trainstab", "training-stability checks (trainstab)")
    for option in OPTIONS:
        group.addoption(
            f"--trainstab-{option.name}", dest=option.key, default=None, help=f"{option.help} [ini: {option.key}]"
        )
        parser.addini(option.key, help=option.help, default=None)
    group.addoption(
        "--trainstab-set",
        dest="trainstab_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model or training option for every trainstab test (repeatable) [ini: trainstab_set]",
    )
    parser.addini("trainstab_set", type="linelist", help="KEY=VALUE overrides, one per line", default=[])
    group.addoption(
        "--trainstab-update-baseline",
        dest="trainstab_update_baseline",
        action="store_true",
        help="rewrite the baselines that are missing, worse or measured differently (and pass); keeps the others",
    )
    group.addoption(
        "--trainstab-regen-all",
        dest="trainstab_regen_all",
        action="store_true",
        help="rewrite every baseline of the checks that run (and pass)",
    )


def read_options(config: pytest.Config) -> dict[str, Any]:
    """Every trainstab option, from the command line or else the ini file, typed.

    Raises :class:`pytest.UsageError` naming the option and the expected type.
    """
    raw: dict[str, tuple[str, Any]] = {}
    for option in OPTIONS:
        value = config.getoption(option.key)
        raw[option.key] = (f"--trainstab-{option.name}", value)
        if value is None:
            raw[option.key] = (f"ini key {option.key}", config.getini(option.key))
    overrides = [*config.getini("trainstab_set"), *config.getoption("trainstab_set")]
    try:
        values = parse_options(raw, overrides)
        if values["trainstab_baselines"] is not None:
            values["trainstab_baselines"] = str(_from_rootdir(config, values["trainstab_baselines"]))
        values["trainstab_update_baseline"] = config.getoption("trainstab_update_baseline")
        values["trainstab_regen_all"] = config.getoption("trainstab_regen_all")
        from trainstab.gate import policy_from

        policy_from(values)  # a rewrite flag without a baseline folder fails now, not in every test
    except TrainstabError as error:
        raise pytest.UsageError(str(error)) from None
    return values


def _from_rootdir(config: pytest.Config, folder: str) -> Path:
    """A relative baseline folder is relative to pytest's rootdir, wherever pytest was started."""
    path = Path(folder)
    return path if path.is_absolute() else Path(config.rootpath) / path


def pytest_configure(config: pytest.Config) -> None:
    """Markers, validated options, and the session folder shared with xdist workers."""
    config.addinivalue_line("markers", "trainstab: a training-stability test (trains tiny models)")
    if not config.pluginmanager.hasplugin("xdist"):  # case() groups each model's checks; harmless without xdist
        config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's worker group (xdist is not active)")
    config.stash[_OPTIONS_KEY] = read_options(config)
    report = config.stash[_OPTIONS_KEY]["trainstab_report"]
    if not hasattr(config, "workerinput"):
        from trainstab.gate import policy_from

        try:  # before any training: a wrong folder costs seconds, not a sweep
            if report is not None:
                check_folder_writable(Path(report), "--trainstab-report")
            policy_from(config.stash[_OPTIONS_KEY])  # a baseline folder that is a file, or one a rewrite cannot write
        except TrainstabError as error:
            raise pytest.UsageError(str(error)) from None
    # Training properties need no deadline; loaded only when the user chose no profile of their own.
    load_default_profile(config.getoption("--hypothesis-profile", None))
    global _IS_WORKER
    # A session run inside another (pytester, in-process) must not take the outer one's rows, files or role.
    config.stash[_OUTER_KEY] = (list(_VERDICTS), dict(_CURVES), list(_WRITTEN), set(_SENT_CURVES), _IS_WORKER)
    _VERDICTS.clear()
    _CURVES.clear()
    _WRITTEN.clear()
    _SENT_CURVES.clear()
    _IS_WORKER = hasattr(config, "workerinput")
    try:
        config.stash[_SESSION_KEY] = _session_of(config)
    except TrainstabError as error:
        raise pytest.UsageError(str(error)) from None
    if not _IS_WORKER:  # workers started later inherit the folder's path through the environment too
        os.environ[SESSION_ENV] = str(config.stash[_SESSION_KEY][0])


def _session_of(config: pytest.Config) -> tuple[Path, str | None, bool]:
    """This process's session folder, the environment value it replaces, and whether this process made it."""
    handed = getattr(config, "workerinput", {}).get("trainstab_session") or os.environ.get(SESSION_ENV)
    if hasattr(config, "workerinput") and handed:  # the controller's folder (a remote worker: if it is here)
        try:
            return check_private(Path(handed)), os.environ.get(SESSION_ENV), False
        except TrainstabError:
            pass  # not on this machine or not ours: this worker caches on its own
    return make_session_folder(_cache_root(config)), os.environ.get(SESSION_ENV), True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(pytest-xdist, controller) Hand each worker the session folder, also where the environment does not reach."""
    node.workerinput["trainstab_session"] = str(node.config.stash[_SESSION_KEY][0])


def _cache_root(config: pytest.Config) -> Path | None:
    """pytest's cache folder for trainstab, or None (no cache provider, or a read-only checkout)."""
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    try:
        return Path(cache.mkdir("trainstab")) if cache is not None else None
    except OSError:
        return None


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's sweep cache (the controller's, or a worker's own), and hand back what was found."""
    global _IS_WORKER
    if _SESSION_KEY in config.stash:
        folder, previous, made_here = config.stash[_SESSION_KEY]
        if made_here:  # the controller's, or a worker's own when the controller's was out of reach
            shutil.rmtree(folder, ignore_errors=True)
        if not hasattr(config, "workerinput"):
            if previous is None:
                os.environ.pop(SESSION_ENV, None)
            else:  # a session run inside another (pytester): the outer one's workers still need theirs
                os.environ[SESSION_ENV] = previous
    if _OUTER_KEY in config.stash:
        verdicts, curves, written, sent, is_worker = config.stash[_OUTER_KEY]
        _VERDICTS[:], _WRITTEN[:] = verdicts, written
        _CURVES.clear()
        _CURVES.update(curves)
        _SENT_CURVES.clear()
        _SENT_CURVES.update(sent)
        _IS_WORKER = is_worker


def session_folder(config: pytest.Config) -> Path:
    """Where this session's sweeps are cached (shared by every xdist worker): private to this user, or an error."""
    if _SESSION_KEY not in config.stash:  # the plugin was not configured for this config (a direct library call)
        config.stash[_SESSION_KEY] = (make_session_folder(_cache_root(config)), os.environ.get(SESSION_ENV), True)
    return check_private(config.stash[_SESSION_KEY][0])


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The seed and default model, and the baselines (with a warning if recorded elsewhere).

    The models the collected checks name are listed after collection (:func:`pytest_report_collectionfinish`).
    """
    options = config.stash[_OPTIONS_KEY]
    lines = [f"trainstab: seed={options['trainstab_seed']} default model={options['trainstab_model']}"]
    from trainstab.gate import baseline_header

    lines += [f"trainstab: {line}" for line in baseline_header(options)]
    return lines


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """The models the collected checks will train, each once however many checks name it."""
    from trainstab.gate import ModelUnderTest

    options = config.stash[_OPTIONS_KEY]
    labels: dict[str, None] = {}  # ordered, unique
    for item in items:
        target = getattr(item, "callspec", None) and item.callspec.params.get("model")  # type: ignore[attr-defined]
        if isinstance(target, ModelUnderTest):
            labels[target.label(options)] = None
    return [f"trainstab: checking {len(labels)} model(s): {', '.join(labels)}"] if labels else []


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Let checks find the running test (to attach their metrics to its report)."""
    _CURRENT["item"] = item


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Forget the finished test."""
    _CURRENT.pop("item", None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Carry a check's full row and its files to write on the call report (xdist sends it to the controller)."""
    report = yield
    payloads = item.stash.get(_PAYLOAD_KEY, [])
    if call.when == "call" and payloads:
        report.trainstab = payloads
    return report


def add_payload(item: pytest.Item, payload: dict[str, Any]) -> None:
    """Store what a check reports for this test (its row, files to write, curves); a test may run several."""
    item.stash.setdefault(_PAYLOAD_KEY, []).append(payload)


def first_curves_of(label: str) -> bool:
    """True the first time a process asks for ``label``: one copy of a model's curves is enough."""
    if label in _SENT_CURVES:
        return False
    _SENT_CURVES.add(label)
    return True


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """On the controller (or a run without xdist): collect verdicts and write baselines and ``.obtained`` files.

    Workers only decide; every file is written here, in one process, so
    parallel runs never race on a baseline.
    """
    payloads = getattr(report, "trainstab", None)
    if report.when != "call" or not payloads or _IS_WORKER:
        return
    for payload in payloads:
        row = payload["row"]
        if hasattr(report, "wasxfail") and row["verdict"] == "FAIL":
            row = {**row, "verdict": "xfail"}  # a known-unstable model failing as declared: not a failure of the run
        _VERDICTS.append(row)
        if "curves" in payload:
            _CURVES[payload["row"]["model"]] = payload["curves"]
        if payload["writes"]:
            from trainstab.gate import FileWrite, write_files

            _WRITTEN.extend(write_files([FileWrite(**w) for w in payload["writes"]]))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller writes the report folder, if asked (``--trainstab-report DIR``, relative to the cwd).

    A file the run could not write (a baseline, the report) makes the run fail: it never reports success.
    """
    _write_report(session)
    unwritten = any(line.startswith(WRITE_FAILED) for line in _WRITTEN)
    if not _IS_WORKER and unwritten and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _write_report(session: pytest.Session) -> None:
    """Write the report folder when one was asked for (controller only)."""
    folder = options_of(session.config)["trainstab_report"]
    if folder is None or _IS_WORKER or not _VERDICTS:
        return
    from trainstab.environment import light_environment
    from trainstab.gatereport import write_report

    seed = options_of(session.config)["trainstab_seed"]
    # Interrupted (Ctrl-C), stopped at a failure (-x, --maxfail) or ended by an internal error: the report is partial.
    stopped = bool(session.shouldstop or session.shouldfail)  # Ctrl-C, -x, --maxfail
    complete = session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not stopped
    try:
        written = write_report(
            Path(folder), list(_VERDICTS), dict(_CURVES),
            {"seed": seed, "complete": complete, "environment": light_environment(seed)},
        )  # fmt: skip
    except OSError as error:
        _WRITTEN.append(f"{WRITE_FAILED} the report in {folder} ({error.strerror or error}); check that folder")
    else:
        _WRITTEN.append(f"wrote {written[-1]} (report: {len(written)} files)")


@pytest.fixture
def trainstab_sweep(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """A function returning this session's (cached) sweep of a model.

    ``trainstab_sweep()`` sweeps the run's model; ``trainstab_sweep("reference",
    "qk_layernorm=false")`` a model with overrides. Returns a SweepResult.
    """
    from trainstab.testing import ModelUnderTest, sweep_of

    def sweep(model: str | None = None, *overrides: str) -> Any:
        return sweep_of(request.config, ModelUnderTest(model, tuple(overrides)))

    return sweep


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One row per model and check (value, bound, baseline, verdict), then every file the run wrote."""
    if not _VERDICTS and not _WRITTEN:
        return
    terminalreporter.section("trainstab summary")
    terminalreporter.write_line(f"{'model':<36} {'check':<18} {'value':>10} {'bound':>10} {'baseline':<12} verdict")
    shown = {"off": "-", "not gated": "-"}  # baselines off, or a check without baselines
    for row in sorted(_VERDICTS, key=lambda r: (r["model"], r["order"])):
        verdict, baseline = row["verdict"], row["baseline"]["status"]
        value, bound = (f"{x:>10.4g}" if x is not None else f"{'-':>10}" for x in (row["value"], row["bound"]))
        terminalreporter.write_line(
            f"{row['model']:<36} {row['check']:<18} {value} {bound} {shown.get(baseline, baseline):<12} {verdict}"
        )
    for row in _VERDICTS:
        if row["verdict"] == "warn":  # report-only checks pass their test; say why they are over
            why = "\n".join(filter(None, (row["message"], row["baseline"]["message"])))
            terminalreporter.write_line(f"trainstab: warn {row['model']} {row['check']}: {why}")
    for line in _WRITTEN:
        terminalreporter.write_line(f"trainstab: {line}")


_OPTIONS_KEY = pytest.StashKey[dict[str, Any]]()
#: The session cache folder, the environment value it replaced, and whether this process made it (and removes it).
_SESSION_KEY = pytest.StashKey[tuple[Path, str | None, bool]]()
_OUTER_KEY = pytest.StashKey[tuple[Any, ...]]()  # an outer session's state, for a session run inside it
_PAYLOAD_KEY = pytest.StashKey[list[dict[str, Any]]]()
_CURRENT: dict[str, pytest.Item] = {}
_VERDICTS: list[dict[str, Any]] = []  # the rows of every check (controller)
_CURVES: dict[str, dict[str, Any]] = {}  # per model label: what its report figure draws (controller)
_WRITTEN: list[str] = []  # files written this session, for the summary (controller)
_SENT_CURVES: set[str] = set()  # model labels whose curves this process already sent
_IS_WORKER = False  # set in pytest_configure: xdist workers decide, the controller writes


def options_of(config: pytest.Config) -> dict[str, Any]:
    """The typed trainstab options of a pytest run."""
    return config.stash[_OPTIONS_KEY]


def current_item() -> pytest.Item | None:
    """The test item running now, if any."""
    return _CURRENT.get("item")
