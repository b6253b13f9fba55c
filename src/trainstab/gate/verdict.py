"""The merge gate: each check's verdict, held to the committed baseline, as one typed :class:`Verdict`.

:func:`judge` is the one pipeline from a model's evidence to its verdicts;
the pytest plugin runs it for one check per test, ``trainstab check`` for the
whole battery. Deciding and writing are separate: a verdict carries the files
the run should write (a new baseline, a rewritten one, an ``.obtained``
beside a mismatch) and :func:`trainstab.core.files.write_files` writes them, so
under pytest-xdist the workers decide and the controller alone writes. The
baseline workflow follows pytest-regressions:

- no baseline: write it and fail with "commit this file";
- worse than the baseline beyond tolerance, or measured under another
  protocol: fail with baseline, measured and tolerance, and write the run's
  metrics to ``<check>.obtained.json`` beside it;
- ``update_failing`` rewrites the baselines that fail (or are missing),
  ``regen_all`` every one; a rewrite keeps the tolerances written in the old file
  and the top-level keys a team added to it (``notes``);
- a baseline that cannot be read is an error naming the file, and is never rewritten.

A :class:`Verdict` is what every output reads: the terminal summary, the
CLI's table, the JUnit properties and the report's JSON (:meth:`Verdict.to_json`;
the pytest plugin sends that row from the process that judged to the one that
writes, and rebuilds it there with :meth:`Verdict.from_json`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trainstab.checks.battery import Check, CheckResult, Thresholds, run_check
from trainstab.checks.head_vs_base import Difference, HeadVsBase
from trainstab.checks.head_vs_base import compare as compare_with_base
from trainstab.checks.registry import check as registered_check
from trainstab.checks.registry import report_order, sweep_check_names
from trainstab.checks.scaling import Evidence
from trainstab.core.environment import light_environment
from trainstab.core.files import FileWrite, finite_or_none, shown
from trainstab.core.results import SweepResult, Tolerance
from trainstab.gate.against import Pair
from trainstab.gate.baseline import (
    BaselineError,
    Comparison,
    baseline_path,
    compare,
    environment_differences,
    new_baseline,
    obtained_path,
    protocol_changes,
    read_baseline,
    recipe_changes,
    to_text,
)
from trainstab.run.options import (
    BaselinePolicy,
    RunOptions,
    paired_rule,
    policy_from,
    scaling_thresholds,
    thresholds,
)

#: ``off``: no baseline folder; ``new``: recorded now; ``passed``: within tolerance; ``worse``: beyond it;
#: ``incomparable``: measured under another protocol; ``updated``/``regenerated``: rewritten by a flag;
#: ``error``: the file cannot be used; ``not gated``: a check without baselines (the scaling checks).
BaselineStatus = Literal[
    "off", "new", "passed", "worse", "incomparable", "updated", "regenerated", "error", "not gated"
]


@dataclass(frozen=True)
class Verdict:
    """A check's verdict on one model together with its baseline comparison: one row of every report."""

    label: str  # the model's label
    result: CheckResult
    seed: int  # the run's seed, so a row says how to reproduce it
    status: BaselineStatus = "not gated"
    baseline: str | None = None  # the baseline file, when baselines are on
    comparisons: tuple[Comparison, ...] = ()  # every gated number, worse or not
    message: str = ""  # why the baseline part failed or what it did
    writes: tuple[FileWrite, ...] = ()  # files the run should write (not part of the row)
    recorded: dict[str, Any] | None = None  # the baseline's metrics as read before this run (for plots)
    baseline_fails: bool = False  # the baseline part fails the test
    expected_to_fail: bool = False  # an xfail test: a known-unstable model failing as declared
    environment_drift: tuple[str, ...] = ()  # how the baseline's environment differs from this run's (not a row)
    paired: HeadVsBase | None = None  # the comparison with the base revision (--against); None when off

    @property
    def paired_fails(self) -> bool:
        """The head is worse than the base beyond the pair's noise on an asserted check."""
        return self.paired is not None and self.paired.status == "worse" and self.result.asserted

    @property
    def check(self) -> str:
        """The check's name."""
        return self.result.check

    @property
    def passed(self) -> bool:
        """The check passed its bound (or is report-only) and its baseline."""
        return (self.result.passed or not self.result.asserted) and not self.baseline_fails and not self.paired_fails

    @property
    def verdict(self) -> str:
        """``pass``, ``FAIL``, ``xfail`` (failed as declared), or ``warn``: report-only over its bound or worse."""
        if not self.passed:
            return "xfail" if self.expected_to_fail else "FAIL"
        worse_than_base = self.paired is not None and self.paired.status == "worse"
        return "warn" if self.status == "worse" or worse_than_base else self.result.verdict

    @property
    def failure(self) -> str:
        """Why it failed ("" when it passed): the check's own message, then the baseline's."""
        parts = [self.result.message] if not self.result.passed and self.result.asserted else []
        parts += [self.message] if self.baseline_fails else []
        parts += [self.paired.message()] if self.paired_fails and self.paired is not None else []
        return "\n".join(parts)

    @property
    def why(self) -> str:
        """Everything said about it: the check's message, then the baseline's."""
        paired = self.paired.message() if self.paired is not None else ""
        return "\n".join(filter(None, (self.result.message, self.message, paired)))

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready data: the report's ``checks`` entries, and what xdist workers send."""
        result = self.result
        return {
            "model": self.label,
            "check": result.check,
            "order": report_order(result.check),
            "passed": self.passed,
            "verdict": self.verdict,
            "check_passed": result.passed,
            "asserted": result.asserted,
            "value": finite_or_none(result.value),
            "bound": finite_or_none(result.bound),
            "lr": result.lr,
            "seed": self.seed,
            "message": result.message,
            "baseline": {
                "status": self.status,
                "file": self.baseline,
                "message": self.message,
                "recorded": self.recorded,
                "fails": self.baseline_fails,
                "comparisons": [
                    {
                        "metric": c.metric,
                        "lr": c.lr,
                        "baseline": c.baseline,
                        "measured": c.measured,
                        "rel": c.tolerance.rel,
                        "abs": c.tolerance.abs,
                        "worse_is": c.tolerance.worse,
                        "worse": c.worse,
                    }
                    for c in self.comparisons
                ],
            },
            "against": _paired_json(self.paired),
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Verdict:
        """The verdict a :meth:`to_json` row describes.

        Not in the row: the files to write, the xfail mark of a verdict that passed (a strict xfail that
        passes fails its test anyway), and whether a non-finite value was NaN or infinite (both read as NaN).
        """
        baseline = row["baseline"]
        value, bound = (math.nan if row[key] is None else row[key] for key in ("value", "bound"))
        result = CheckResult(
            check=row["check"],
            passed=row["check_passed"],
            value=value,
            bound=bound,
            lr=row["lr"],
            message=row["message"],
            asserted=row["asserted"],
        )
        comparisons = tuple(
            Comparison(
                metric=c["metric"],
                lr=c["lr"],
                baseline=c["baseline"],
                measured=c["measured"],
                tolerance=Tolerance(rel=c["rel"], abs=c["abs"], worse=c["worse_is"]),
                worse=c["worse"],
            )
            for c in baseline["comparisons"]
        )
        return cls(
            label=row["model"],
            result=result,
            seed=row["seed"],
            status=baseline["status"],
            baseline=baseline["file"],
            comparisons=comparisons,
            message=baseline["message"],
            recorded=baseline["recorded"],
            baseline_fails=baseline["fails"],
            expected_to_fail=row["verdict"] == "xfail",
            paired=_paired_from_json(row.get("against"), row["check"]),
        )

    def junit_properties(self) -> list[tuple[str, object]]:
        """The key metrics as flat JUnit properties (one ``<property>`` each)."""
        props: list[tuple[str, object]] = [
            ("trainstab_model", self.label),
            ("trainstab_check", self.check),
            ("trainstab_verdict", self.verdict.lower()),
            ("trainstab_value", finite_or_none(self.result.value)),
            ("trainstab_bound", finite_or_none(self.result.bound)),
            ("trainstab_lr", self.result.lr),
            ("trainstab_seed", self.seed),
            ("trainstab_baseline", self.status),
        ]
        worse = [c for c in self.comparisons if c.worse]
        if worse:
            c = max(worse, key=_overshoot)
            where = f"@lr={c.lr}" if c.lr is not None else ""
            props.append(("trainstab_worst_regression", f"{c.metric}{where}: {c.baseline} -> {c.measured}"))
        if self.paired is not None:
            props.append(("trainstab_against", self.paired.against))
            props.append(("trainstab_against_status", self.paired.status))
            worst = self.paired.worst
            if worst is not None:
                props.append(("trainstab_against_worst", worst.describe()))
        return props


def _paired_json(paired: HeadVsBase | None) -> dict[str, Any] | None:
    """The comparison with the base as report JSON: both sides per seed, the difference and its band."""
    if paired is None:
        return None
    return {
        "base": paired.against,
        "status": paired.status,
        "seeds": list(paired.seeds),
        "why": paired.why,
        "differences": [
            {
                "statistic": d.statistic,
                "lr": d.lr,
                "base": [finite_or_none(v) for v in d.base],
                "head": [finite_or_none(v) for v in d.head],
                "difference": finite_or_none(d.difference),
                "band": finite_or_none(d.band),
                "scale": d.scale,
                "worse": d.worse,
            }
            for d in paired.differences
        ],
    }


def _paired_from_json(data: dict[str, Any] | None, check: str) -> HeadVsBase | None:
    """The comparison a :func:`_paired_json` value describes (non-finite numbers read as NaN)."""
    if data is None:
        return None

    def number(value: float | None) -> float:
        return math.nan if value is None else float(value)

    differences = tuple(
        Difference(
            statistic=d["statistic"],
            lr=d["lr"],
            base=tuple(number(v) for v in d["base"]),
            head=tuple(number(v) for v in d["head"]),
            difference=number(d["difference"]),
            band=number(d["band"]),
            scale=d["scale"],
        )
        for d in data["differences"]
    )
    return HeadVsBase(check, data["status"], data["base"], tuple(data["seeds"]), differences, data["why"])


def _overshoot(comparison: Comparison) -> float:
    """How many tolerances a worse number moved (inf when it is no longer measured): ranks regressions."""
    base, measured = comparison.baseline, comparison.measured
    if measured is None or base is None:
        return math.inf
    allowed = comparison.tolerance.allowed(base)
    move = abs(measured - base)
    return move / allowed if allowed > 0 else math.inf


@dataclass(frozen=True)
class _Held:
    """What holding a result to its baseline file found (the baseline part of a :class:`Verdict`)."""

    status: BaselineStatus
    message: str = ""
    writes: tuple[FileWrite, ...] = ()
    fails: bool = False
    recorded: dict[str, Any] | None = None
    comparisons: tuple[Comparison, ...] = ()
    drift: tuple[str, ...] = ()  # the baseline's recorded environment against this run's


def gate(
    *, label: str, result: CheckResult, sweep: SweepResult, bounds: Thresholds, policy: BaselinePolicy, seed: int
) -> Verdict:
    """Hold ``result`` (a battery check's, on ``sweep``) to the committed baseline of that check on ``label``.

    Decides what to write; writes nothing. A baseline file that cannot be used fails the check (status
    ``error``) with the file and the problem, and is never written over.
    """
    path: Path | None = None
    if policy.folder is None:
        held = _Held("off")
    elif result.check not in sweep_check_names():  # the scaling checks have no baselines
        held = _Held("not gated")
    else:
        path = baseline_path(policy.folder, label, result.check)
        held = _held_to(path, label, result, sweep, bounds, policy)
    return Verdict(
        label=label,
        result=result,
        seed=seed,
        status=held.status,
        baseline=str(path) if path is not None else None,
        comparisons=held.comparisons,
        message=held.message,
        writes=held.writes,
        recorded=held.recorded,
        baseline_fails=held.fails,
        environment_drift=held.drift,
    )


def _held_to(
    path: Path, label: str, result: CheckResult, sweep: SweepResult, bounds: Thresholds, policy: BaselinePolicy
) -> _Held:
    """The baseline at ``path`` against this run: the pytest-regressions workflow of the module docstring."""
    check = result.check
    obtained = obtained_path(path)
    # A .obtained file is this tool's output, not the user's: once the baseline is settled it is stale.
    clear = (FileWrite(str(obtained), "", "clear"),) if obtained.exists() else ()
    try:
        old = read_baseline(path, check, label)
    except BaselineError as error:
        return _Held("error", message=str(error), fails=True)
    current = new_baseline(label, check, sweep, bounds, old.tolerances if old is not None else None)
    if old is not None:  # a team's own top-level keys ("notes") survive a rewrite, as its tolerances do
        current.update(old.team_fields())
    text = to_text(current)
    if old is None:
        new = FileWrite(str(path), text, "new")
        if policy.rewriting:
            return _Held("new", message=f"recorded {shown(path)}", writes=(new, *clear))
        message = (
            f"no baseline yet for {label} / {check}: wrote {shown(path)} from this run; review and commit "
            f"this file (git add {shown(path)}), then rerun"
        )
        return _Held("new", message=message, writes=(new,), fails=True)
    recorded = old.data["metrics"]
    drift = _drift(old.data.get("environment"), sweep)
    changes = protocol_changes(old, current)
    comparisons = tuple(compare(old, current)) if not changes else ()
    worse = [row for row in comparisons if row.worse]
    if changes or worse:
        if policy.rewriting:
            why = "protocol changed" if changes else f"{len(worse)} number(s) were worse"
            rewrite: Literal["updated", "regenerated"] = "regenerated" if policy.regen_all else "updated"
            message = f"rewrote {shown(path)} ({why})"
            writes = (FileWrite(str(path), text, rewrite), *clear)
            return _Held(rewrite, message, writes, recorded=recorded, comparisons=comparisons, drift=drift)
        # A report-only check's worse numbers are shown, not failed; a baseline it cannot compare with still fails.
        return _Held(
            "incomparable" if changes else "worse",
            message=_failure_message(path, obtained, changes, worse, recipe_changes(old, current), policy.flags),
            writes=(FileWrite(str(obtained), text, "obtained"),),
            fails=result.asserted or bool(changes),
            recorded=recorded,
            comparisons=comparisons,
            drift=drift,
        )
    # Compared with the text read and validated, not read again: the file could have been swapped since.
    if policy.regen_all and old.text != text:
        writes = (FileWrite(str(path), text, "regenerated"), *clear)
        return _Held(
            "regenerated", f"regenerated {shown(path)}", writes, recorded=recorded, comparisons=comparisons, drift=drift
        )
    return _Held("passed", writes=clear, recorded=recorded, comparisons=comparisons, drift=drift)


def _drift(recorded: Any, sweep: SweepResult) -> tuple[str, ...]:
    """How a baseline's recorded environment differs from the sweep's (versions, CPU, device, precision, seed)."""
    if not isinstance(recorded, dict):
        return ()
    return tuple(environment_differences(recorded, {**light_environment(sweep.config.train.seed), **sweep.environment}))


def _failure_message(
    path: Path, obtained: Path, changes: list[str], worse: list[Comparison], recipe: list[str], flags: str
) -> str:
    """Why a baseline fails: the protocol changes, or each worse number with baseline, measured and tolerance."""
    if changes:
        lines = [f"baseline {shown(path)} was measured under another protocol, so it cannot be compared:"]
        lines += [f"  {change}" for change in changes]
        lines.append(
            f"Run with the baseline's settings, or re-record it with {flags}update-baseline and commit it "
            f"(this run's metrics are in {shown(obtained)})"
        )
        return "\n".join(lines)
    lines = [f"worse than the baseline {shown(path)}:"]
    lines += [f"  {row.describe()}" for row in worse]
    if recipe:
        lines.append("changed since the baseline: " + "; ".join(recipe))
    lines.append(
        f"This run's metrics are in {shown(obtained)}. If the change is intended, refresh the baseline with "
        f"{flags}update-baseline and commit it"
    )
    return "\n".join(lines)


def judge(
    label: str,
    evidence: Evidence,
    names: list[str] | tuple[str, ...],
    options: RunOptions,
    pair: Pair | None = None,
) -> list[Verdict]:
    """The verdicts of the checks ``names`` on one model, in the order given: the one pipeline of both front ends.

    A battery check reads the model's sweep (``evidence.sweep``) and is held to its baseline; a scaling check
    reads the ladders and has no baseline. With ``pair`` (``--against``), a battery check is also compared with
    the model at the base revision (:mod:`trainstab.checks.head_vs_base`). Training happens when a check first
    asks for what it reads.
    """
    bounds, scaling_bounds, policy = thresholds(options), scaling_thresholds(options), policy_from(options)
    seed = evidence.base.train.seed
    verdicts = []
    for name in names:
        check = registered_check(name)
        if check.kind == "scaling":
            result = check.run(evidence, scaling_bounds)
            paired = pair.not_compared(name, "a scaling check is judged by its own bounds") if pair else None
            verdicts.append(Verdict(label=label, result=result, seed=seed, paired=paired))
            continue
        sweep = evidence.sweep
        result = run_check(check, sweep, bounds)
        verdict = gate(label=label, result=result, sweep=sweep, bounds=bounds, policy=policy, seed=seed)
        if pair is not None:
            verdict = dataclasses.replace(verdict, paired=_compared(check, pair, bounds, options))
        verdicts.append(verdict)
    return verdicts


def _compared(check: Check, pair: Pair, bounds: Thresholds, options: RunOptions) -> HeadVsBase:
    """The check on the pair: not compared when the base has no such model, else the paired comparison."""
    base = pair.base_sweeps
    if base.absent:
        return pair.not_compared(check.name, base.absent)
    return compare_with_base(check, base.sweeps, pair.head_sweeps, bounds, paired_rule(options), pair.against)
