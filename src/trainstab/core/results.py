"""What a sweep measured, and the numbers read from it: no torch here.

Training (``engine``, ``sweep``) writes these records; every layer above it
(checks, forecasts, baselines, reports, the pytest plugin) reads them. Keeping
them torch-free is what lets the plugin start fast and the report be written
on a pytest-xdist controller that never trained anything.

A probe snapshot (``RunResult.history``) is a flat dict of floats keyed by
slash paths. This module names those keys once: the engine writes them through
these names, and every reader looks them up through the same names.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from trainstab.core.config import SweepConfig, resolved_config
from trainstab.core.files import finite_or_none

# Keys of a probe snapshot (engine._record_probe writes them).
STEP = "step"  # the optimizer step the snapshot was taken at (as a float)
LOSS = "loss"  # training cross-entropy of that step
ATTN_MAX_LOGIT = "attn/max_logit"  # max |attention logit| over layers and heads
ATTN_MAX_LOGIT_LAYER = "attn/max_logit/layer"  # + "<layer>", and + "<layer>/head<h>" per head
ATTN_ENTROPY_LAYER = "attn/entropy/layer"  # + "<layer>": mean attention entropy, nats
LOG_Z_MEAN = "output/log_z/mean"  # log Z of the output logits over the batch: mean, min, max
LOG_Z_MIN = "output/log_z/min"
LOG_Z_MAX = "output/log_z/max"
MAX_ABS_OUTPUT_LOGIT = "output/max_abs_logit"
GRAD_NORM = "grads/norm"  # global gradient norm (before clipping)
GRAD_RMS = "grads/rms"  # global gradient RMS (before clipping)
UPDATE_RMS = "updates/rms"
PARAM_RMS = "params/rms"
GRAD_RMS_OF = "grads/rms/"  # + "<parameter name>": one parameter tensor's gradient RMS (before clipping)

#: The paper: every run whose max attention logit went above 1e4 diverged. The scaling forecast flags an LR
#: forecast above it, and the figures draw it.
ATTENTION_DIVERGENCE_LEVEL = 1e4


def attention_layer_key(layer: int, head: int | None = None) -> str:
    """The snapshot key of a layer's max attention logit, or of one of its heads."""
    return f"{ATTN_MAX_LOGIT_LAYER}{layer}" + (f"/head{head}" if head is not None else "")


def entropy_layer_key(layer: int) -> str:
    """The snapshot key of a layer's mean attention entropy."""
    return f"{ATTN_ENTROPY_LAYER}{layer}"


@dataclass(frozen=True)
class RunResult:
    """The summary of one learning rate of a sweep."""

    lr: float  # peak learning rate
    initial_loss: float  # l0: training loss at initialization (step 0)
    final_loss: float  # mean training loss over the final share of steps; NaN if diverged
    eval_loss: float  # held-out loss after training; NaN if diverged
    max_attention_logit: float  # max over probes and layers of max |z|
    log_z_mean: float  # mean log Z of the output logits at the last probe
    diverged: bool  # loss or gradient went non-finite
    diverged_at_step: int | None  # first non-finite step, if diverged
    losses: tuple[float, ...]  # training loss per step (until divergence)
    history: tuple[dict[str, float], ...]  # probe snapshots, flat slash-keyed metrics (the keys above)

    def capped_loss(self) -> float:
        """min(l(eta), l0), with a diverged or non-finite run counted as l0."""
        if self.diverged or not math.isfinite(self.final_loss):
            return self.initial_loss
        return min(self.final_loss, self.initial_loss)


@dataclass(frozen=True)
class SweepResult:
    """Every run of a sweep, the paper's summary numbers and where they came from."""

    config: SweepConfig
    runs: tuple[RunResult, ...]
    lr_sensitivity: float  # mean over the grid of min(l, l0) - l*
    best_lr: float  # the LR with the lowest capped final loss
    environment: dict[str, object]  # versions, CPU, threads, seed
    elapsed_seconds: float  # wall-clock time of the sweep


@dataclass(frozen=True)
class CoordinateResult:
    """Activation RMS per width, step and layer, and the per-layer slopes at the last step (µP coordinate check)."""

    widths: tuple[int, ...]
    rms: tuple[tuple[tuple[float, ...], ...], ...]  # [width][step][layer], step 0 = before any update
    slopes: tuple[float, ...]  # per layer: d log(RMS) / d log(width) at the last step
    band: float

    @property
    def passed(self) -> bool:
        """Every layer's slope within the band."""
        return all(abs(s) <= self.band for s in self.slopes)

    @property
    def worst_layer(self) -> int:
        """The layer with the steepest slope."""
        return max(range(len(self.slopes)), key=lambda layer: abs(self.slopes[layer]))


def sweep_to_dict(result: SweepResult) -> dict[str, Any]:
    """Everything about a sweep as plain JSON-ready data (NaN becomes null): ``trainstab sweep --json``."""
    return {
        "runs": finite_or_none([dataclasses.asdict(run) for run in result.runs]),
        "lr_sensitivity": finite_or_none(result.lr_sensitivity),
        "best_lr": result.best_lr,
        "config": finite_or_none(resolved_config(result.config)),
        "environment": result.environment,
        "elapsed_seconds": result.elapsed_seconds,
    }


def lr_sensitivity(runs: tuple[RunResult, ...] | list[RunResult]) -> tuple[float, float]:
    """LR sensitivity and best LR of a grid of runs, as the paper defines them.

    LR sensitivity = mean over the grid of ( min(l(eta), l0) - l* ), l* the best capped loss.
    """
    capped = [run.capped_loss() for run in runs]
    best = min(capped)
    best_lr = runs[capped.index(best)].lr
    return sum(c - best for c in capped) / len(capped), best_lr


def up_to(lr: float, max_lr: float) -> bool:
    """Whether ``lr`` is within ``max_lr`` (allowing for the rounding of an LR written as text)."""
    return lr <= max_lr * (1 + 1e-9)


def runs_up_to(sweep: SweepResult, max_lr: float) -> list[RunResult]:
    """The runs of ``sweep`` at LRs up to ``max_lr``: the ones the checks look at."""
    return [run for run in sweep.runs if up_to(run.lr, max_lr)]


def log_z_at_the_ends(run: RunResult) -> float:
    """The largest |log Z| over the tokens of the first probe (initialisation) and of the last finite one.

    Where training starts the output logits and where it leaves them: a gross init (10x weights, a 30x head)
    shows at the first, a drift that stays at the last. A transient excursion mid-run does neither: at width
    256 every qk-norm zoo model's log Z rose to 40-53 at LR 0.3 and came back near 6, where at width 32 it stays
    under ~16 (benchmarks/calibrate.py --battery-widths). 0 if no probe is finite.
    """
    finite = [x for x in map(_abs_log_z, run.history) if math.isfinite(x)]
    return max(log_z_at_init(run), finite[-1]) if finite else 0.0


def log_z_at_init(run: RunResult) -> float:
    """The largest |log Z| over the tokens of the first probe (initialisation); 0 if it is not finite or absent."""
    first = _abs_log_z(run.history[0]) if run.history else 0.0
    return first if math.isfinite(first) else 0.0


def _abs_log_z(snapshot: dict[str, float]) -> float:
    """The largest |log Z| over the tokens of one probe snapshot."""
    return max(abs(snapshot[LOG_Z_MIN]), abs(snapshot[LOG_Z_MAX]))


def max_abs_log_z(run: RunResult) -> float:
    """The largest finite |log Z| of the output logits over a run's probes (0 if none is finite)."""
    return max((x for x in map(_abs_log_z, run.history) if math.isfinite(x)), default=0.0)


def ignored(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether the parameter tensor ``name`` matches a shell-style pattern (``.`` and ``/`` are the same)."""
    normal = name.replace(".", "/")
    return any(fnmatch.fnmatchcase(normal, pattern.replace(".", "/")) for pattern in patterns)


def parameter_names(sweep: SweepResult) -> list[str]:
    """The model's trained parameter tensors, by their own names, as the sweep's first probe recorded them."""
    first = next((run.history[0] for run in sweep.runs if run.history), {})
    return sorted(key.removeprefix(GRAD_RMS_OF) for key in first if key.startswith(GRAD_RMS_OF))


def unmatched_patterns(names: list[str], patterns: tuple[str, ...]) -> dict[str, list[str]]:
    """Each pattern that matches none of ``names``, with up to three names closest to it (a likely typo)."""
    unmatched = {}
    for pattern in patterns:
        if not any(ignored(name, (pattern,)) for name in names):
            unmatched[pattern] = difflib.get_close_matches(pattern, names, n=3, cutoff=0.3)
    return unmatched


#: A tensor whose gradient RMS at initialisation is below this share of the model's largest has no learning signal
#: (softmax cancels it). Zoo: k-norm biases at 2e-9 to 9e-9 of the largest; every other tensor at 1.8e-4 or more.
NO_SIGNAL = 1e-6


def _gradients_at_init(run: RunResult) -> dict[str, float]:
    """Each tensor's gradient RMS at the first probe (initialisation), keyed as in the snapshot."""
    return {k: v for k, v in (run.history[0] if run.history else {}).items() if k.startswith(GRAD_RMS_OF)}


def no_signal_tensors(run: RunResult) -> list[str]:
    """Tensors whose gradient RMS at the first probe (initialisation) is below :data:`NO_SIGNAL` times the largest.

    A gradient that small is rounding, not signal: the tensor cannot change the loss, whatever is trained.
    The classic case is a bias on the keys (a key bias, or the bias of a LayerNorm on k): it adds the same
    q . b to every logit of a query, which softmax cancels.
    """
    first = _gradients_at_init(run)
    floor = NO_SIGNAL * max(first.values(), default=0.0)
    return sorted(key.removeprefix(GRAD_RMS_OF) for key, value in first.items() if 0 < value < floor)


def smallest_grad_rms_over_eps(
    run: RunResult, eps: float, warmup: int, ignore: tuple[str, ...] = ()
) -> tuple[float, str]:
    """The smallest non-zero (gradient RMS / eps) of any tensor at any probe after warm-up, and that tensor.

    Tensors with no learning signal (:func:`no_signal_tensors`) are left out: they have none to lose. So are
    the names matching ``ignore``. Returns (inf, "") when no probe after warm-up has a non-zero gradient (a run
    that diverged at once).
    """
    scale = max(eps, 1e-300)
    first = _gradients_at_init(run)
    floor = NO_SIGNAL * max(first.values(), default=0.0)
    worst, name = math.inf, ""
    for h in run.history:
        if h[STEP] < warmup:
            continue
        for key, value in h.items():
            if not key.startswith(GRAD_RMS_OF) or first.get(key, math.inf) < floor:
                continue
            if ignored(key.removeprefix(GRAD_RMS_OF), ignore):
                continue
            if value > 0 and value / scale < worst:
                worst, name = value / scale, key.removeprefix(GRAD_RMS_OF)
    return worst, name


def gradient_rms_floor(run: RunResult, warmup_steps: int) -> float:
    """The smallest per-tensor gradient RMS of a run, each tensor's taken as its median after warm-up.

    The median over probes keeps one quiet step from deciding the trend; the
    minimum over tensors is the layer that reaches epsilon first. Tensors with
    no learning signal (:func:`no_signal_tensors`, such as a key bias) are left
    out, as the battery's ``grad_rms_vs_eps`` leaves them out: their gradient is
    rounding at every size (minGPT with qk-norm: about 5e-11 at widths 32 to
    64), which no epsilon can stall and no trend of size describes.
    """
    first = _gradients_at_init(run)
    floor = NO_SIGNAL * max(first.values(), default=0.0)
    series: dict[str, list[float]] = {}
    for snapshot in run.history:
        if snapshot[STEP] < warmup_steps:
            continue
        for key, value in snapshot.items():
            if key.startswith(GRAD_RMS_OF) and value > 0 and not first.get(key, math.inf) < floor:
                series.setdefault(key, []).append(value)
    return min((statistics.median(values) for values in series.values()), default=math.nan)


def spike_score(losses: tuple[float, ...] | list[float], sigmas: float, window: int, start: int = 0) -> float:
    """OLMo 2's spike score: share of steps > ``sigmas`` std above the rolling mean of the ``window`` before."""
    points = range(max(start, window), len(losses))
    spikes = 0
    for i in points:
        previous = losses[i - window : i]
        mean, std = statistics.fmean(previous), statistics.pstdev(previous)
        spikes += losses[i] - mean > sigmas * std if std > 0 else losses[i] > mean
    return spikes / len(points) if len(points) else 0.0


def dead_tensors(sweep: SweepResult, min_update_steps: int, ignore: tuple[str, ...] = ()) -> list[str]:
    """Parameter tensors that got a non-zero gradient at fewer than ``min_update_steps`` probes.

    Every LR shares the init and the data, so the first run that did not diverge tells. Names matching
    ``ignore`` are left out.
    """
    for run in sweep.runs:
        if run.diverged or not run.history:
            continue
        keys = [k for k in run.history[0] if k.startswith(GRAD_RMS_OF)]
        live = {k: sum(1 for h in run.history if h.get(k, 0.0) > 0) for k in keys}
        dead = sorted(k.removeprefix(GRAD_RMS_OF) for k, n in live.items() if n < min_update_steps)
        return [name for name in dead if not ignored(name, ignore)]
    return []


@dataclass(frozen=True)
class Tolerance:
    """How far a gated metric may move in its bad direction before the check fails."""

    rel: float  # share of |baseline|
    abs: float  # plus this much, so values near 0 are not held to 0
    worse: Literal["higher", "lower"]  # the direction that is a regression

    def allowed(self, baseline: float) -> float:
        """The largest move in the bad direction that still passes."""
        return self.abs + self.rel * abs(baseline)


@dataclass(frozen=True)
class Metric:
    """One number a check records in its baseline: how it is measured, its shape, and how far it may move.

    ``measure`` is called as ``measure(run, sweep, thresholds)`` for a metric recorded per LR (``per_lr``) and
    as ``measure(sweep, thresholds)`` for one number per sweep; ``thresholds`` is the battery's bounds
    (:class:`trainstab.checks.battery.Thresholds`). A ``"number"`` is rounded to the baselines' significant digits and
    written as null when not finite; a ``"count"`` is a whole number every sweep measures (never null).
    """

    name: str
    measure: Callable[..., Any]
    kind: Literal["number", "bool", "list", "count"] = "number"
    per_lr: bool = True
    tolerance: Tolerance | None = None  # None: recorded for people and plots, never gated
    rounded: bool = True  # a "number" to the baselines' significant digits (False: as measured, e.g. an LR)
    # Compared as log10 against a base revision (trainstab.checks.head_vs_base): a number that spans decades.
    log_scale: bool = False
