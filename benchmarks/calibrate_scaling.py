"""Calibrate the scaling tier on the zoo: the stability forecasts at their defaults, with confusion tables.

    python benchmarks/calibrate.py --scaling [--seeds 0] [--cache DIR]
    python benchmarks/calibrate.py --scaling --robustness   # seeds 0-2 x kernel sets: the verdicts that flip

Every zoo model's width ladder (32, 48, 64) and depth ladder (1, 2, 4) at the
default profile, read from the calibration cache (trained there when
missing), goes through ``attention_forecast``, ``eps_forecast`` and
``sensitivity_scaling`` exactly as the plugin runs them (``scaling.Evidence``
with the zoo's sweeps; a confirmation rung at width 128 is trained when
``attention_forecast`` asks for one). Labels come from the zoo, not from the
checks:

- ``attention_forecast``: a stable model must pass; a model labelled
  ``attention growth`` must fail (a post-LN model is labelled from its
  construction, its 800-step run does not confirm it: a miss there is
  printed, marked so).
- ``eps_forecast``: the paper measured gradient RMS falling to AdamW's eps
  1e-8 at about 1e9 parameters, and eps 1e-15 as the fix. Every stable model
  (an unstable one's diverged runs count as crossed at any eps) is judged
  twice on the same ladders: at its eps 1e-8 (expected to fail at the
  1e9 target) and at eps 1e-15's level (must pass). The second judges the
  runs trained at eps 1e-8 against 10 x 1e-15: at the gradient RMS these sizes
  have (1e-6 and up) eps 1e-8 moves an Adam update by at most 1%.
- ``sensitivity_scaling``: a stable model must pass; a model whose LR
  sensitivity is expected to grow with size (``SENSITIVITY_GROWS``) must fail.

Printed per check: pass/fail counts per label, the worst stable value, the
bound, the mildest value of a model with the problem, and the margin between
them (their ratio, as the battery's tables: the room a default bound sits in).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from calibrate import MIN_MARGIN, ZOO, ZooModel, measure

from trainstab.checks.battery import CheckResult
from trainstab.checks.scaling import (
    Evidence,
    ScalingConfig,
    ScalingThresholds,
    check_attention_forecast,
    check_eps_forecast,
    check_sensitivity_scaling,
)
from trainstab.core.config import SweepConfig
from trainstab.core.errors import Inconclusive
from trainstab.core.results import SweepResult

BASE_WIDTH, BASE_DEPTH = 32, 2
#: The eps the paper recommends at scale; the zoo trains at AdamW's default 1e-8.
SMALL_EPS, DEFAULT_EPS = 1e-15, 1e-8


def zoo_sweeps(model: ZooModel, seed: int, cache: Path) -> Callable[[list[SweepConfig]], list[SweepResult]]:
    """The sweeps a check asks for, read from (or trained into) the calibration cache, by width and depth."""

    def sweeps(configs: list[SweepConfig]) -> list[SweepResult]:
        results = []
        for config in configs:
            where = {}
            if config.model.width != BASE_WIDTH:
                where["width"] = config.model.width
            if config.model.depth != BASE_DEPTH:
                where["depth"] = config.model.depth
            if len(where) > 1:
                raise ValueError(f"a rung changes width and depth at once: {where}")
            results.append(measure(model, "default", seed, cache, **where).sweep)
        return results

    return sweeps


def evidence_of(model: ZooModel, seed: int, cache: Path) -> Evidence:
    """The model's :class:`Evidence` at the default ladders, over the calibration cache."""
    base = measure(model, "default", seed, cache).sweep.config
    return Evidence(base, ScalingConfig(), zoo_sweeps(model, seed, cache))


@dataclasses.dataclass(frozen=True)
class Row:
    """One check's verdicts over the zoo, split by label."""

    check: str
    stable: list[tuple[ZooModel, CheckResult | Inconclusive]]  # must pass
    cause: list[tuple[ZooModel, CheckResult | Inconclusive]]  # must fail
    higher_is_worse: bool = True
    cause_bound: float | None = None  # when the models with the problem are held to another level (eps_forecast)


def judged(check: Callable[[Evidence, ScalingThresholds], CheckResult], evidence: Evidence,
           t: ScalingThresholds) -> CheckResult | Inconclusive:  # fmt: skip
    """The check's verdict, or the :class:`Inconclusive` it raised (what a user sees as exit code 4)."""
    try:
        return check(evidence, t)
    except Inconclusive as refused:
        return refused


def _value(result: CheckResult, higher_is_worse: bool) -> float:
    """The check's value, as a number a margin can be taken of (a crossing at a measured size is infinite)."""
    value = result.value
    if math.isnan(value):
        return math.inf if higher_is_worse else 0.0
    return value


def print_row(row: Row) -> int:
    """Print one check's confusion counts and margin; return its misclassified verdicts (and a thin margin).

    An inconclusive verdict (the ladder's points scatter too much to extrapolate) is neither; it is listed.
    """
    undecided = [(m, r) for m, r in [*row.stable, *row.cause] if isinstance(r, Inconclusive)]
    row = Row(
        row.check,
        [(m, r) for m, r in row.stable if isinstance(r, CheckResult)],
        [(m, r) for m, r in row.cause if isinstance(r, CheckResult)],
        row.higher_is_worse,
        row.cause_bound,
    )
    stable_fail = [(m, r) for m, r in row.stable if not r.passed]
    cause_pass = [(m, r) for m, r in row.cause if r.passed]
    pick_worst, pick_mildest = (max, min) if row.higher_is_worse else (min, max)
    worst = pick_worst((_value(r, row.higher_is_worse) for _, r in row.stable), default=math.nan)
    mildest = pick_mildest((_value(r, row.higher_is_worse) for _, r in row.cause), default=math.nan)
    bound = row.stable[0][1].bound if row.stable else math.nan
    # As the battery's tables: the gap between the worst stable value and the mildest value with the problem,
    # the room a default bound sits in (where every model with the problem crossed at a measured size: infinite).
    margin = (worst / mildest if not row.higher_is_worse else mildest / worst) if worst and mildest else math.nan
    if row.cause_bound is not None:  # two levels: how far each side sits on its right side of its own level
        cause_bound = row.cause_bound
        margin = min(worst / bound, cause_bound / mildest) if mildest > 0 else worst / bound
    asserted = all(r.asserted for _, r in row.stable + row.cause)
    shown_bound = f"{bound:.3g}" + (f"/{row.cause_bound:.3g}" if row.cause_bound is not None else "")
    thin = asserted and bool(row.cause) and not margin >= MIN_MARGIN
    note = "  report-only" if not asserted else f"  margin below {MIN_MARGIN:g}x" if thin else ""
    print(
        f"{row.check:<32} {len(row.stable) - len(stable_fail):>6}/{len(stable_fail):<6} "
        f"{len(row.cause) - len(cause_pass):>6}/{len(cause_pass):<6} {worst:>12.3g} {shown_bound:>9} {mildest:>12.3g} "
        f"{margin:>7.3g}{note}"
    )
    for m, refused in undecided:
        print(f"    inconclusive: {m.label}: {str(refused)[:220]}")
    for m, r in stable_fail:
        print(f"    {'false alarm' if asserted else 'reported'}: {m.label}: {r.message.splitlines()[0][:220]}")
    for m, r in cause_pass:
        marked = (
            f" (confirmed at scale: {m.at_scale})"
            if m.at_scale
            else f" (unconfirmed: {m.unconfirmed})"
            if m.unconfirmed
            else ""
        )
        print(f"    missed: {m.label} ({m.problem}){marked}: {r.message.splitlines()[0][:200]}")
    if not asserted:
        return 0
    return len(stable_fail) + len([1 for m, _ in cause_pass if not m.unconfirmed or m.at_scale]) + thin


#: Models whose LR sensitivity is expected to grow with size: see stability_tests/zoo.py (SENSITIVITY_ZOO).
def sensitivity_grows(model: ZooModel) -> bool:
    """Whether the zoo labels ``model``'s LR sensitivity as growing with size."""
    return model.problem == "sensitivity growth"


def scaling_tables(
    cache: Path, seed: int, verdicts: dict[str, list[str]] | None = None, models: tuple[ZooModel, ...] = ZOO
) -> int:
    """The scaling tier's confusion tables on the zoo; returns the misclassified verdicts and thin margins.

    ``verdicts`` gets, per ``label|default|seed``, the checks that failed (an inconclusive one as ``name?``), with
    eps_forecast at both eps (a stable model passes at 1e-15 and fails at 1e-8): what ``calibrate.py
    --robustness --scaling`` compares across seeds and kernels.
    """
    t = ScalingThresholds()
    small_eps = dataclasses.replace(t, grad_rms_over_eps=t.grad_rms_over_eps * SMALL_EPS / DEFAULT_EPS)
    attention, eps_default, eps_small, sensitivity = [], [], [], []
    per_model = []
    for model in models:
        evidence = evidence_of(model, seed, cache)
        a = judged(check_attention_forecast, evidence, t)
        e8 = judged(check_eps_forecast, evidence, t)
        e15 = judged(check_eps_forecast, evidence, small_eps)
        s = judged(check_sensitivity_scaling, evidence, t)
        attention.append((model, a))
        eps_default.append((model, e8))
        eps_small.append((model, e15))
        sensitivity.append((model, s))
        per_model.append((model, a, e8, e15, s))
        if verdicts is not None:
            judged_here = (
                ("attention_forecast", a),
                (f"eps_forecast at {SMALL_EPS:g}", e15),
                (f"eps_forecast at {DEFAULT_EPS:g}", e8),
                ("sensitivity_scaling", s),
            )
            verdicts[f"{model.label}|default|{seed}"] = [
                name if isinstance(r, CheckResult) else f"{name}?"
                for name, r in judged_here
                if not isinstance(r, CheckResult) or r.verdict == "FAIL"
            ]
    print(f"\n=== scaling tier at its defaults (widths 32,48,64; depths 1,2,4; target {t.target_parameters:.0e}), "
          f"seed {seed}: {len(models)} zoo models ===")  # fmt: skip
    print(f"{'check':<32} {'stable pass/fail':>13} {'cause pass/fail':>13} {'worst stable':>12} {'bound':>9} "
          f"{'mildest cause':>12} {'margin':>7}")  # fmt: skip
    rows = [
        Row(
            "attention_forecast",
            [(m, r) for m, r in attention if m.stable],
            [(m, r) for m, r in attention if m.problem == "attention growth"],
        ),
        Row(  # the stable models: an unstable one's diverged runs count as crossed at any eps
            f"eps_forecast (eps {SMALL_EPS:g} / {DEFAULT_EPS:g})",
            [(m, r) for m, r in eps_small if m.stable],
            [(m, r) for m, r in eps_default if m.stable],
            higher_is_worse=False,
            cause_bound=t.grad_rms_over_eps * DEFAULT_EPS,
        ),
        Row(
            "sensitivity_scaling",
            [(m, r) for m, r in sensitivity if m.stable],
            [(m, r) for m, r in sensitivity if sensitivity_grows(m)],
        ),
    ]
    wrong = sum(print_row(row) for row in rows)
    print("\nper model: attention_forecast | eps_forecast at 1e-8 | sensitivity_scaling")
    for model, *results in per_model:
        tag = "stable" if model.stable else model.problem or ""
        shown = [
            "inconclusive" if isinstance(r, Inconclusive) else f"{r.verdict:<4} {_value(r, True):9.3g}" for r in results
        ]
        print(f"  {model.label:<44} {tag:<18} {shown[0]} | {shown[1]} | {shown[3]}")
        attention = results[0]
        if isinstance(attention, CheckResult) and "trained to confirm" in attention.message:
            print(f"      attention_forecast: {attention.message.split('; ')[0][:300]}")
        if isinstance(results[3], CheckResult):
            print(f"      {results[3].message.splitlines()[0][:300]}")
    print(f"\n{wrong} misclassified scaling verdicts (and margins below {MIN_MARGIN:g}x)")
    return wrong
