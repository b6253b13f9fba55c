"""The pytest side of the battery: ``parametrize_with_checks`` and shared sweeps.

In the style of scikit-learn's estimator checks::

    from trainstab.testing import parametrize_with_checks

    @parametrize_with_checks(["reference", "mypkg.models:build"])
    def test_training_stability(model, check):
        check(model)

yields one test per (model, check). A check trains nothing itself: it asks
for the model's sweep, which is computed once per session and shared by
every check and every pytest-xdist worker (a file lock on a cache keyed by
model, config, corpus and versions), then holds one number to one bound.
torch is imported only when a check runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from trainstab.gate import (
    Gated,
    ModelUnderTest,
    gate,
    policy_from,
    scaling_plan,
    scaling_thresholds,
    sweep_config,
    thresholds,
    ungated,
)
from trainstab.options import CHECK_NAMES
from trainstab.plugin import add_payload, current_item, first_curves_of, options_of, session_folder
from trainstab.session_cache import read_sweep, write_sweep

if TYPE_CHECKING:
    from trainstab.config import SweepConfig
    from trainstab.scaling import Evidence
    from trainstab.sweep import SweepResult

__all__ = [  # ModelUnderTest lives in trainstab.gate (shared with the CLI) and is re-exported here
    "CHECK_NAMES",
    "SCALING_CHECK_NAMES",
    "ModelUnderTest",
    "StabilityCheck",
    "cache_key",
    "cached_sweep",
    "case",
    "evidence",
    "expect_failure",
    "parametrize_with_checks",
    "sweep_of",
]

#: Checks across a ladder of sizes (trainstab.scaling.SCALING_CHECKS holds the code); opt in with
#: ``parametrize_with_checks(models, checks=SCALING_CHECK_NAMES)``. They train the width and depth ladders.
SCALING_CHECK_NAMES = ("attention_forecast", "eps_forecast", "sensitivity_scaling", "lr_transfer", "coordinates")


class StabilityCheck:
    """One check of the battery, callable on a model as ``check(model)``."""

    def __init__(self, name: str) -> None:
        if name not in CHECK_NAMES + SCALING_CHECK_NAMES:
            known = ", ".join(CHECK_NAMES + SCALING_CHECK_NAMES)
            raise ValueError(f"unknown trainstab check {name!r}; known: {known}")
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __call__(self, model: ModelUnderTest | str) -> None:
        """Run the check on ``model`` and hold it to its baseline; fails the test with the reason."""
        from trainstab.errors import TrainstabError

        item = current_item()
        if item is None:
            raise RuntimeError("trainstab checks run inside a pytest test with the trainstab plugin active")
        target = model if isinstance(model, ModelUnderTest) else ModelUnderTest(model)
        options = options_of(item.config)
        try:
            config = sweep_config(options, target)
            gated, sweep = self._gated(item.config, target.label(options), config)
        except TrainstabError as error:
            problem = str(error)  # failed outside the except block: no "during handling" chain in the report
        else:
            problem = ""
        if problem:
            pytest.fail(f"trainstab: {target.label(options)}: {problem}", pytrace=False)
        _record(item, gated, config.train.seed, sweep)
        if not gated.passed:
            verb = "failed for" if not gated.result.passed else "for"  # only the baseline part failed: "for"
            label = gated.label  # the resolved model, also for parametrize_with_checks() without models
            pytest.fail(f"{self.name} {verb} {label} (seed {config.train.seed}): {gated.failure}", pytrace=False)

    def _gated(self, pytest_config: pytest.Config, label: str, sweep: SweepConfig) -> tuple[Gated, SweepResult | None]:
        """This check's verdict on the model's sweep (battery, held to its baseline) or ladders (scaling checks)."""
        options = options_of(pytest_config)
        if self.name in SCALING_CHECK_NAMES:
            from trainstab.scaling import SCALING_CHECKS

            result = SCALING_CHECKS[self.name](evidence(pytest_config, sweep), scaling_thresholds(options))
            return ungated(label, result), None
        from trainstab.checks import run_check

        swept = cached_sweep(pytest_config, sweep)
        bounds = thresholds(options)
        result = run_check(self.name, swept, bounds)
        return gate(label, self.name, result, swept, bounds, policy_from(options)), swept


def _record(item: pytest.Item, gated: Gated, seed: int, sweep: SweepResult | None) -> None:
    """Attach the verdict: flat JUnit properties, and the full row (plus files to write) for the controller."""
    from trainstab.gatereport import gate_row, junit_properties, model_curves

    row = gate_row(gated, (CHECK_NAMES + SCALING_CHECK_NAMES).index(gated.result.check), seed)
    item.user_properties.extend(junit_properties(row))
    payload: dict[str, Any] = {"row": row, "writes": [dataclasses.asdict(w) for w in gated.writes]}
    wants_report = options_of(item.config)["trainstab_report"] is not None
    if wants_report and sweep is not None and first_curves_of(gated.label):
        payload["curves"] = model_curves(gated.label, sweep)
    add_payload(item, payload)


def parametrize_with_checks(
    models: list[ModelUnderTest | str] | None = None, checks: list[str] | None = None
) -> pytest.MarkDecorator:
    """One test per (model, check): parametrizes ``model`` and ``check``.

    ``models`` defaults to the run's ``--trainstab-model``; ``checks`` to the
    whole battery. Test ids read ``<model>-<check>``.
    """
    targets = [m if isinstance(m, ModelUnderTest) else ModelUnderTest(m) for m in (models or [ModelUnderTest()])]
    names = list(checks) if checks is not None else list(CHECK_NAMES)
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


def expect_failure(model: ModelUnderTest | str, check: str, reason: str) -> Any:
    """A (model, check) case that must fail: a strict xfail, so a check that stops
    catching a known problem fails the suite."""
    return case(model, check, pytest.mark.xfail(strict=True, reason=reason))


_EVIDENCE: dict[str, Evidence] = {}


def evidence(config: pytest.Config, sweep: SweepConfig) -> Evidence:
    """One model's ladders and coordinate check, shared by its scaling checks in this process.

    Every rung's sweep goes through the session cache, so rungs shared with the
    battery (the base size) or with another worker train once.
    """
    from trainstab.scaling import Evidence

    plan = scaling_plan(options_of(config))
    key = cache_key(sweep) + repr(plan)
    if key not in _EVIDENCE:
        _EVIDENCE[key] = Evidence(sweep, plan, lambda rung: cached_sweep(config, rung))
    return _EVIDENCE[key]


def sweep_of(config: pytest.Config, target: ModelUnderTest) -> SweepResult:
    """This session's sweep of ``target`` under the run's options (computed once)."""
    return cached_sweep(config, sweep_config(options_of(config), target))


_MEMO: dict[str, SweepResult] = {}


def cache_key(sweep: SweepConfig) -> str:
    """A digest of everything a sweep's numbers depend on."""
    import torch

    from trainstab.corpus import bundled_corpus_path
    from trainstab.environment import trainstab_version

    corpus = Path(sweep.corpus) if sweep.corpus is not None else bundled_corpus_path()
    stat = corpus.stat() if corpus.exists() else None
    identity = {
        "config": dataclasses.asdict(sweep),
        "corpus": [str(corpus.resolve()), stat.st_size if stat else None, stat.st_mtime_ns if stat else None],
        "trainstab": trainstab_version(),
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cached_sweep(config: pytest.Config, sweep: SweepConfig) -> SweepResult:
    """The sweep's result, computed once per session across all xdist workers."""
    from filelock import FileLock

    from trainstab.sweep import run_sweep

    key = cache_key(sweep)
    if key in _MEMO:
        return _MEMO[key]
    path = session_folder(config) / f"{key}.json"
    with FileLock(str(path) + ".lock"):
        result = read_sweep(path, sweep)
        if result is None:
            result = run_sweep(sweep)
            with contextlib.suppress(OSError):  # a full disk costs the other workers a retrain, not this result
                write_sweep(path, result)
    _MEMO[key] = result
    return result
