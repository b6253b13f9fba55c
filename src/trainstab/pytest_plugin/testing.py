"""The pytest side of the battery: ``parametrize_with_checks`` and shared sweeps.

In the style of scikit-learn's estimator checks::

    from trainstab.pytest_plugin.testing import parametrize_with_checks

    @parametrize_with_checks(["reference", "mypkg.models:build"])
    def test_training_stability(model, check):
        check(model)

yields one test per (model, check). A check trains nothing itself: it asks
for the model's sweep, which is computed once per session and shared by
every check and every pytest-xdist worker (a file lock on a cache keyed by
model, config, corpus and versions), then holds one number to one bound.
torch is imported only when a sweep is trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from trainstab.cache import sweep_cache
from trainstab.cache.session_cache import CacheUse, lookup_sweep, write_sweep
from trainstab.checks.registry import (
    MUP_CHECK_NAMES,
    PAIRED_CHECK_NAMES,
    SCALING_CHECK_NAMES,
    STABILITY_FORECAST_NAMES,
    all_checks,
    battery_names,
)
from trainstab.checks.registry import check as registered_check
from trainstab.checks.scaling import Evidence
from trainstab.core.config import SweepConfig, bundled_corpus_path
from trainstab.core.environment import trainstab_version
from trainstab.core.errors import Crash, Inconclusive, ModelCrashed, TrainstabError, TrainstabWarning
from trainstab.core.results import SweepResult
from trainstab.gate.against import Pair
from trainstab.gate.report import model_curves
from trainstab.gate.verdict import Verdict, judge
from trainstab.pytest_plugin.session import Session, add_payload, current_item, session_of
from trainstab.run.options import ModelUnderTest, paired_rule, scaling_plan, sweep_config, time_limits

__all__ = [  # ModelUnderTest lives in trainstab.run.options (shared with the CLI) and is re-exported here
    "CHECK_NAMES",  # noqa: F822 (module __getattr__: a team's checks are in it)
    "MUP_CHECK_NAMES",
    "PAIRED_CHECK_NAMES",
    "SCALING_CHECK_NAMES",
    "STABILITY_FORECAST_NAMES",
    "CheckFailed",
    "ModelUnderTest",
    "StabilityCheck",
    "TrainingCrashed",
    "cache_key",
    "cached_sweep",
    "case",
    "evidence",
    "expect_failure",
    "parametrize_with_checks",
    "sweep_of",
]


def __getattr__(name: str) -> Any:
    """``CHECK_NAMES``, the default set, computed on first use: a team's checks registered to run with the
    battery are in it (trainstab.checks.registry)."""
    if name == "CHECK_NAMES":
        return battery_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CheckFailed(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """A check's verdict failed the test: what :func:`expect_failure` expects, and nothing else is."""


class TrainingCrashed(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """The model crashed while training: the test errors, it does not fail.

    Raised in setup for the cases of :func:`parametrize_with_checks` (the plugin trains what the check reads
    before the test runs, :func:`train_before_the_check`), so pytest reports an error as it does for any
    failing fixture (JUnit ``<error>`` included); raised in the test body (:func:`sweep_of`, a check called
    outside those cases), the plugin reports it as an error too.
    """


def crash_message(crash: Crash, config: pytest.Config) -> str:
    """The one line a crashed test reports; the whole traceback before it under ``--tb=long``/``--full-trace``."""
    line = f"trainstab: {crash.line()}"
    if config.getoption("tbstyle", "auto") == "long" or config.getoption("fulltrace", False):
        return f"{crash.traceback or '(no traceback: the process died without raising)'}\n{line}"
    return f"{line}; --tb=long shows the whole traceback"


class StabilityCheck:
    """One check of the battery, callable on a model as ``check(model)``."""

    def __init__(self, name: str) -> None:
        known = all_checks()
        if name not in known:
            raise ValueError(f"unknown trainstab check {name!r}; known: {', '.join(known)}")
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __call__(self, model: ModelUnderTest | str) -> None:
        """Run the check on ``model`` and hold it to its baseline; fails the test with the reason."""
        item = current_item()
        if item is None:
            raise RuntimeError("trainstab checks run inside a pytest test with the trainstab plugin active")
        target = model if isinstance(model, ModelUnderTest) else ModelUnderTest(model)
        options = session_of(item.config).options
        label = target.label(options)
        crashed: Crash | None = None
        try:
            found = evidence(item.config, sweep_config(options, target))
            (verdict,) = judge(label, found, [self.name], options, pair_of(item.config, found.base))
        except TrainstabError as error:
            problem = str(error)  # failed outside the except block: no "during handling" chain in the report
        except ModelCrashed as error:
            problem, crashed = "", error.crash
        else:
            problem = ""
        if crashed is not None:
            raise TrainingCrashed(crash_message(crashed, item.config), pytrace=False)
        if problem:
            pytest.fail(f"trainstab: {label}: {problem}", pytrace=False)
        sweep = found.sweep if registered_check(self.name).kind == "sweep" else None
        compared = verdict.paired is not None and verdict.paired.status != "not compared"
        pair = pair_of(item.config, found.base) if compared else None  # its base was trained (judge compared it)
        base = (pair.against, pair.base_sweeps.sweeps[0]) if pair is not None and pair.base_sweeps.sweeps else None
        _record(item, verdict, sweep, base)
        if not verdict.passed:
            verb = "failed for" if not verdict.result.passed else "for"  # only the baseline part failed: "for"
            raise CheckFailed(f"{self.name} {verb} {label} (seed {verdict.seed}): {verdict.failure}", pytrace=False)
        _warn(verdict, sweep)


def _warn(verdict: Verdict, sweep: SweepResult | None) -> None:
    """Say what passed with a caveat as :class:`TrainstabWarning` s, which ``-W error::...`` turns into failures."""
    where = f"{verdict.label} / {verdict.check}"
    if verdict.verdict == "warn":
        over = "over its bound" if not verdict.result.passed else "worse than its baseline or base"
        warnings.warn(TrainstabWarning(f"{where} is report-only and {over}: {verdict.why}"), stacklevel=3)
    if verdict.environment_drift:
        warnings.warn(
            TrainstabWarning(
                f"{where}: the baseline {verdict.baseline} was recorded in another environment "
                f"({'; '.join(verdict.environment_drift)}): numbers may move within tolerance"
            ),
            stacklevel=3,
        )
    reproducibility = str(sweep.environment.get("reproducibility", "")) if sweep is not None else ""
    if reproducibility.startswith("not repeatable"):
        warnings.warn(TrainstabWarning(f"{where}: the sweep is {reproducibility}"), stacklevel=3)


def _record(
    item: pytest.Item, verdict: Verdict, sweep: SweepResult | None, base: tuple[str, SweepResult] | None = None
) -> None:
    """Attach the verdict: flat JUnit properties, and the full row (plus files to write) for the controller;
    ``base``: the base revision's name and sweep, drawn beside the model's curves (``--trainstab-against``)."""
    item.user_properties.extend(verdict.junit_properties())
    payload: dict[str, Any] = {"row": verdict.to_json(), "writes": [dataclasses.asdict(w) for w in verdict.writes]}
    session = session_of(item.config)
    if session.options.report is not None and sweep is not None and session.first_curves_of(verdict.label):
        payload["curves"] = model_curves(verdict.label, sweep, base)
    if session.cache_events:  # what this process's sweeps did with the caches since the last report
        payload["cache"] = [dataclasses.asdict(use) for use in session.cache_events]
        session.cache_events.clear()
    add_payload(item, payload)


def parametrize_with_checks(
    models: list[ModelUnderTest | str] | None = None, checks: list[str] | None = None
) -> pytest.MarkDecorator:
    """One test per (model, check): parametrizes ``model`` and ``check``.

    ``models`` defaults to the run's ``--trainstab-model``; ``checks`` to the
    whole battery. Test ids read ``<model>-<check>``.
    """
    targets = [m if isinstance(m, ModelUnderTest) else ModelUnderTest(m) for m in (models or [ModelUnderTest()])]
    names = list(checks) if checks is not None else list(battery_names())
    return pytest.mark.parametrize(("model", "check"), [case(target, name) for target in targets for name in names])


def case(model: ModelUnderTest | str, check: str, *marks: pytest.MarkDecorator) -> Any:
    """One (model, check) parameter set for ``@pytest.mark.parametrize(("model", "check"), ...)``.

    It carries the ``trainstab`` marker and one xdist group per model: with
    ``--dist loadgroup`` every check of a model runs on the worker that trains
    its sweep, instead of a second worker waiting on the cache lock.
    """
    target = model if isinstance(model, ModelUnderTest) else ModelUnderTest(model)
    group = pytest.mark.xdist_group(str(target))
    return pytest.param(
        target, StabilityCheck(check), id=f"{target}-{check}", marks=[pytest.mark.trainstab, group, *marks]
    )


def expect_failure(model: ModelUnderTest | str, check: str, reason: str, *marks: pytest.MarkDecorator) -> Any:
    """A (model, check) case that must fail: a strict xfail, so a check that stops
    catching a known problem fails the suite. Only the check's verdict counts as the expected failure
    (:class:`CheckFailed`): a model that crashes, or input the check refuses, is reported as such.
    ``marks`` are added as in :func:`case` (a ``skipif`` for a library that is not installed)."""
    return case(model, check, pytest.mark.xfail(strict=True, reason=reason, raises=CheckFailed), *marks)


def evidence(config: pytest.Config, sweep: SweepConfig) -> Evidence:
    """One model's sweep, ladders and coordinate check, shared by its checks in this process.

    Every sweep, and every rung's, goes through the session cache, so rungs shared with the
    battery (the base size) or with another worker train once.
    """
    session = session_of(config)
    plan = scaling_plan(session.options)
    key = cache_key(sweep) + repr(plan)
    if key not in session.evidence:
        session.evidence[key] = Evidence(sweep, plan, lambda rungs: cached_sweeps(config, rungs))
    return session.evidence[key]


def pair_of(config: pytest.Config, sweep: SweepConfig) -> Pair | None:
    """The model's head and base for ``--trainstab-against`` (None when it is off), shared by its checks in this
    process: the head's seeds through the session cache, the base's from a checkout (trainstab.gate.against)."""
    session = session_of(config)
    if session.base is None:
        return None
    key = cache_key(sweep)
    if key not in session.pairs:
        rule = paired_rule(session.options)
        session.pairs[key] = Pair(sweep, rule, lambda seeds: cached_sweeps(config, seeds), session.base)
    return session.pairs[key]


def train_ahead(config: pytest.Config, items: list[pytest.Item]) -> int:
    """Train every sweep the collected checks will read as one batch; the number of sweeps it asked for.

    For the Ray executor: tests run one at a time, so a sweep trained when its test asks keeps only its own
    stacks in flight. Asked up front, every model's stacks (and every ladder rung) are in flight at once, and
    the tests then read them from the session cache. A model that fails its preflight is left to its tests,
    which report the error.
    """
    from trainstab.train.sweep import preflight  # training: torch is imported when a sweep is checked

    session = session_of(config)
    wanted: dict[str, SweepConfig] = {}
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        target, check = params.get("model"), params.get("check")
        if not isinstance(target, ModelUnderTest) or not isinstance(check, StabilityCheck):
            continue
        try:
            base = sweep_config(session.options, target)
            for sweep in evidence(config, base).sweeps_read_by([check.name]):
                preflight(sweep)
                wanted.setdefault(cache_key(sweep), sweep)
        except TrainstabError:
            continue
    if wanted:
        cached_sweeps(config, list(wanted.values()))
    return len(wanted)


def sweep_of(config: pytest.Config, target: ModelUnderTest) -> SweepResult:
    """This session's sweep of ``target`` under the run's options (computed once).

    A model that crashes while training raises :class:`TrainingCrashed`: the test errors with one line.
    """
    try:
        return cached_sweep(config, sweep_config(session_of(config).options, target))
    except ModelCrashed as error:
        crashed = error.crash  # raised outside the except block: no "during handling" chain in the report
    raise TrainingCrashed(crash_message(crashed, config), pytrace=False)


def train_before_the_check(item: pytest.Item) -> None:
    """(The plugin's setup of each test.) Train what a trainstab case's check reads, before the test runs.

    pytest reports an exception in setup as an error and one in the test as a failure. Training is the
    check's fixture and the verdict its test: a model that crashes while training errors the test with one
    line (:class:`TrainingCrashed`), and never reads as a failed check. Bad input is left to the check, which
    fails with its own line. Everything trained here is in the session's cache when the check asks.
    """
    params = getattr(getattr(item, "callspec", None), "params", {})
    target, check = params.get("model"), params.get("check")
    if not isinstance(target, ModelUnderTest) or not isinstance(check, StabilityCheck):
        return
    try:
        found = evidence(item.config, sweep_config(session_of(item.config).options, target))
        pair = pair_of(item.config, found.base) if registered_check(check.name).kind == "sweep" else None
        seeds = pair.configs if pair is not None else []
        cached_sweeps(item.config, [*found.sweeps_read_by([check.name]), *seeds])  # what the check then reads
        if pair is not None and not pair.base_trained:  # a base that cannot be trained fails the check, below
            pair.base_trained = True
            session_of(item.config).cache_events.extend(pair.base_sweeps.uses)  # its part of the cache line
        if check.name == "coordinates":  # trains its own short runs, not sweeps
            found.coordinates  # noqa: B018 (computed and kept on the evidence)
    except TrainstabError:
        return
    except ModelCrashed as error:
        crashed = error.crash
    else:
        return
    raise TrainingCrashed(crash_message(crashed, item.config), pytrace=False)


def _trained_or_kept(config: pytest.Config, session: Session, sweeps: list[SweepConfig]) -> list[SweepResult]:
    """The sweeps trained now (as one batch), or read from the persistent cache (``--trainstab-cache``) where an
    identical run kept them."""
    from trainstab.train.sweep import run_sweeps  # training: torch is imported when a sweep is trained

    limits = time_limits(session.options)
    with _terminal_line(config) as say:

        def train(batch: list[SweepConfig]) -> list[SweepResult]:
            return run_sweeps(batch, limits=limits, slow=say)

        if session.options.cache is None:
            return train(sweeps)
        found = sweep_cache.cached_many(Path(session.options.cache), sweeps, train)
    session.cache_events.extend(use for _, use in found)
    return [result for result, _ in found]


@contextlib.contextmanager
def _terminal_line(config: pytest.Config) -> Iterator[Callable[[str], None]]:
    """While a test trains: a line on pytest's terminal, ``trainstab: model ...: no step finished ...``.

    Written past the test's output capture, which would keep it for a failure's report: the point is a log that
    moves while a step takes minutes. (A pytest-xdist worker's terminal is not the one shown: not seen there.)

    The line is said on the watch's thread while this one trains (a step that never returns is still told), so
    it touches none of pytest's state: the capture manager, which swaps file descriptor 1 under each test, is
    not thread-safe, and toggling it there could leave the main thread's output captured or lost. Instead the
    terminal's descriptor is copied here, on the test's own thread with capture suspended for that moment (as
    pytest's own live logging does), and the line is written to that copy only, under a lock; the copy is
    closed once training is over (run_sweeps joins its thread before it returns).
    """
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    terminal, at_line_start = None, True
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.flush()  # what pytest has written so far comes before the line, not after it
            at_line_start = config.get_terminal_writer().width_of_current_line == 0
            with contextlib.suppress(AttributeError, OSError, ValueError):  # no descriptor (an in-memory stream)
                terminal = os.dup(sys.stdout.fileno())
    lock = threading.Lock()

    def say(text: str) -> None:
        nonlocal terminal, at_line_start
        with lock:
            if terminal is None:
                return
            line = ("" if at_line_start else "\n") + f"trainstab: {text}\n"
            at_line_start = True  # pytest's next output starts on a line of its own
            data = line.encode("utf-8", "replace")
            with contextlib.suppress(OSError):  # a closed terminal (a broken pipe) costs the line, not the run
                while data:
                    data = data[os.write(terminal, data) :]

    try:
        yield say
    finally:
        with lock:
            if terminal is not None:
                os.close(terminal)
                terminal = None


def cache_key(sweep: SweepConfig) -> str:
    """A digest of everything a sweep's numbers depend on."""
    corpus = Path(sweep.corpus) if sweep.corpus is not None else bundled_corpus_path()
    stat = corpus.stat() if corpus.exists() else None
    identity = {
        "config": dataclasses.asdict(sweep),
        "corpus": [str(corpus.resolve()), stat.st_size if stat else None, stat.st_mtime_ns if stat else None],
        "trainstab": trainstab_version(),
        "torch": _torch_version(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _torch_version() -> str:
    """The installed torch's version, read without importing torch."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:  # a torch importable without metadata (a source build)
        return "unknown"


def cached_sweep(config: pytest.Config, sweep: SweepConfig) -> SweepResult:
    """The sweep's result, computed once per session across all xdist workers."""
    (result,) = cached_sweeps(config, [sweep])
    return result


#: The crashes of this session's batches of sweeps (keyed by their cache keys), so every check of a model that
#: crashes reports it without training up to the crash again.
_CRASHES = pytest.StashKey[dict[frozenset[str], Crash]]()
#: This session's batches stopped at ``--trainstab-time-limit-seconds``, with their line: every check of the model
#: reports it, instead of each training up to the limit again.
_OUT_OF_TIME = pytest.StashKey[dict[frozenset[str], str]]()


def cached_sweeps(config: pytest.Config, sweeps: list[SweepConfig]) -> list[SweepResult]:
    """Each sweep's result, computed once per session across all xdist workers.

    The sweeps no worker has trained yet train as one batch (on the Ray executor, a ladder's rungs are all in
    flight at once). Their lock files are taken in one order by every worker, so two workers asking for
    overlapping ladders wait for each other instead of training a rung twice, and never deadlock.
    """
    session = session_of(config)
    keys = [cache_key(sweep) for sweep in sweeps]  # a key reads the model's source: computed once per sweep
    wanted = dict(zip(keys, sweeps, strict=True))
    missing = {key: sweep for key, sweep in wanted.items() if key not in session.sweeps}
    with contextlib.ExitStack() as locks:
        for key in sorted(missing):
            locks.enter_context(FileLock(str(session.private_folder() / f"{key}.json") + ".lock"))
        stale: dict[str, str] = {}  # why an entry there did not match its sweep: retrained, and the run says so
        for key in list(missing):
            result, why = lookup_sweep(session.private_folder() / f"{key}.json", missing[key])
            if result is not None:
                session.sweeps[key] = result
                del missing[key]
            elif why:  # damaged or planted: never judged
                stale[key] = why
        batch = frozenset(missing)
        crashes = config.stash.setdefault(_CRASHES, {})
        if batch in crashes:  # training is deterministic: the same batch crashes the same way, so it trains once
            raise ModelCrashed(crashes[batch])
        out_of_time = config.stash.setdefault(_OUT_OF_TIME, {})
        if batch in out_of_time:
            raise Inconclusive(out_of_time[batch])
        try:
            trained = _trained_or_kept(config, session, list(missing.values())) if missing else []
        except ModelCrashed as error:
            crashes[batch] = error.crash
            raise
        except Inconclusive as error:
            out_of_time[batch] = str(error)
            raise
        for key, result in zip(missing, trained, strict=True):
            path, unstored = session.private_folder() / f"{key}.json", ""
            try:
                write_sweep(path, result)
            except OSError as error:  # a full disk costs the other workers a retrain, not this result
                unstored = error.strerror or str(error)
            if key in stale:
                session.cache_events.append(CacheUse(str(path), False, stale[key], unstored, session=True))
            session.sweeps[key] = result
    return [session.sweeps[key] for key in keys]
