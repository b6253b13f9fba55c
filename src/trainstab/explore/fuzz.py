"""Fuzzing the hyperparameter space: a stability property and the unstable-region map.

:func:`assert_stable` is the property users apply under ``@given``::

    from hypothesis import given
    from trainstab.explore.fuzz import assert_stable, training_settings
    from trainstab.explore.strategies import stability_region

    @training_settings
    @given(stability_region(lr=(1e-3, 0.3)))
    def test_the_declared_region_is_stable(point):
        assert_stable(point, model="mypkg.models:build")

``training_settings`` gives that test (and no other) settings that fit examples that train for a second
(:mod:`trainstab.core.hypothesis_profiles`).

Each example trains one short run (``FUZZ_STEPS``). When Hypothesis finds a
counterexample it shrinks it (toward the stable side of every knob, so the
shrunk LR sits at the boundary) and the failure prints the point, what was
measured and the ``@example(...)`` line that pins it.
:func:`explore` runs the same search outside pytest for ``trainstab fuzz``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from trainstab.checks.battery import Thresholds, run_check
from trainstab.core.config import SweepConfig, on_gpu
from trainstab.core.hypothesis_profiles import training_settings
from trainstab.explore.strategies import FuzzPoint
from trainstab.run.overrides import apply_overrides

__all__ = [  # training_settings is re-exported: a fuzz test's imports come from here
    "CAUSES",
    "FUZZ_BATCH",
    "FUZZ_STEPS",
    "Outcome",
    "assert_stable",
    "describe",
    "evaluate",
    "evaluate_batch",
    "explore",
    "training_settings",
]

FUZZ_BATCH = 4  # points per Ray task: each trains in about a second, so one per task would be mostly overhead
FUZZ_STEPS = 60  # steps per example: at 60, no-qk-LN attention logits pass 1e3 between LR 0.1 and 0.2
CAUSES = ("divergence", "attention_logits", "output_logits", "epsilon")


@dataclass(frozen=True)
class Outcome:
    """What one fuzzed point did."""

    point: FuzzPoint
    cause: str | None  # None when stable; else one of CAUSES (the first that applies)
    max_attention_logit: float
    max_abs_log_z: float
    min_grad_rms_over_eps: float
    final_loss: float
    diverged: bool

    @property
    def stable(self) -> bool:
        """True when no instability was seen."""
        return self.cause is None


def evaluate(
    point: FuzzPoint,
    model: str = "reference",
    steps: int = FUZZ_STEPS,
    seed: int = 0,
    thresholds: Thresholds | None = None,
    base: SweepConfig | None = None,
) -> Outcome:
    """Train one short run at ``point`` and classify it against ``thresholds``."""
    t = thresholds or Thresholds()
    start = base or SweepConfig()
    config = apply_overrides(
        dataclasses.replace(
            start,
            model_name=point.model(model),
            lrs=(point.lr,),
            workers=1,
            executor="local",  # a point is one stack, trained here (in a Ray task when explore batches them)
            train=dataclasses.replace(start.train, steps=steps, probe_every=5, seed=seed),
        ),
        point.overrides(),
    )
    from trainstab.train.sweep import run_sweep  # training: torch is imported when a point trains

    sweep = run_sweep(config)  # validates the config first
    (run,) = sweep.runs
    # The battery's own checks, judged at the point's LR whatever it is.
    everywhere = dataclasses.replace(t, max_lr=math.inf)
    log_z, epsilon = (run_check(name, sweep, everywhere) for name in ("log_z", "grad_rms_vs_eps"))
    cause = None
    if run.diverged:
        cause = "divergence"
    elif run.max_attention_logit > t.attention_logit:
        cause = "attention_logits"
    elif not log_z.passed:
        cause = "output_logits"
    elif epsilon.verdict == "FAIL":
        # Only where the battery asserts it: report-only by default (trainstab.checks.battery.REPORT_ONLY).
        cause = "epsilon"
    return Outcome(point, cause, run.max_attention_logit, log_z.value, epsilon.value, run.final_loss, run.diverged)


@functools.lru_cache(maxsize=256)
def _evaluate_once(point: FuzzPoint, model: str, steps: int, seed: int, thresholds: Thresholds) -> Outcome:
    """:func:`evaluate`, memoised: shrinking replays the same point many times, and runs are deterministic."""
    return evaluate(point, model, steps, seed, thresholds)


def describe(outcome: Outcome, model: str, seed: int) -> str:
    """The failure report: the point, the measurements and the line that pins it."""
    return (
        f"unstable ({outcome.cause}) for model {outcome.point.model(model)!r}, seed {seed}: {outcome.point}\n"
        f"  max attention logit {outcome.max_attention_logit:.3g}, max |log Z| {outcome.max_abs_log_z:.3g}, "
        f"min gradient RMS {outcome.min_grad_rms_over_eps:.3g}x eps, diverged {outcome.diverged}\n"
        f"  pin it with: @example({outcome.point!r})"
    )


def assert_stable(
    point: FuzzPoint,
    model: str = "reference",
    steps: int = FUZZ_STEPS,
    seed: int = 0,
    thresholds: Thresholds | None = None,
) -> Outcome:
    """The stability property: train at ``point``; fail with :func:`describe` if unstable.

    Inside ``@given`` it also steers the search toward large attention logits
    (``hypothesis.target``), so unstable corners are found with fewer examples.
    """
    outcome = _evaluate_once(point, model, steps, seed, thresholds or Thresholds())
    if math.isfinite(outcome.max_attention_logit) and outcome.max_attention_logit > 0:
        with contextlib.suppress(InvalidArgument):  # raised when called outside @given
            target(math.log10(outcome.max_attention_logit), label="log10 max attention logit")
    if not outcome.stable:
        raise AssertionError(describe(outcome, model, seed))
    return outcome


def explore(
    region: SearchStrategy[FuzzPoint],
    budget: int,
    model: str = "reference",
    seed: int = 0,
    steps: int = FUZZ_STEPS,
    base: SweepConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Outcome]:
    """Evaluate ``budget`` points drawn by Hypothesis from ``region`` (a strategy), seeded."""
    points: list[FuzzPoint] = []
    seen: set[FuzzPoint] = set()

    @settings(
        max_examples=budget,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(region)
    def draw(point: FuzzPoint) -> None:
        if point not in seen:  # Hypothesis may redraw a point; train each once
            seen.add(point)
            points.append(point)

    # Nothing steers the search (no target, no failure), so drawing every point first draws the same points.
    draw()
    start = base or SweepConfig()
    if start.executor == "ray":
        from trainstab.train.ray_executor import run_calls  # Ray is an optional extra, imported only when chosen

        batches = [points[i : i + FUZZ_BATCH] for i in range(0, len(points), FUZZ_BATCH)]
        calls = [(batch, model, steps, seed, start) for batch in batches]
        report = progress  # the points' count, not the batches'

        def batches_done(done: int, _: int) -> None:
            if report is not None:
                report(min(len(points), done * FUZZ_BATCH), budget)

        gpus = [1.0 if on_gpu(start) else 0.0] * len(calls)
        results = run_calls(evaluate_batch, calls, gpus, progress=batches_done)
        return [outcome for outcomes in results for outcome in outcomes]
    outcomes: list[Outcome] = []
    for point in points:
        outcomes.append(evaluate(point, model, steps, seed, base=start))
        if progress is not None:
            progress(len(outcomes), budget)
    return outcomes


def evaluate_batch(points: list[FuzzPoint], model: str, steps: int, seed: int, base: SweepConfig) -> list[Outcome]:
    """:func:`evaluate` of each point, in this process: one task of the Ray executor."""
    return [evaluate(point, model, steps, seed, base=base) for point in points]
