"""Scaling checks: the battery's questions asked across a ladder of sizes.

A single sweep says whether the proxy is stable; a ladder of sizes says
whether the trend will stay stable at the size the team actually trains.
Each check reads the :class:`Evidence` of one model (its width ladder, depth
ladder and coordinate check, each computed on first use; its ``sweep`` is the battery's) and returns the same
:class:`~trainstab.checks.battery.CheckResult` as the single-sweep battery:

The stability forecasts (:data:`STABILITY_FORECASTS`: will the architecture stay stable at the target size?):

- ``attention_forecast``: max attention logit per LR, fitted against size and
  extrapolated to the target; fails if any LR is forecast above 1e4 (a flag
  that rests on the trend alone is first confirmed on one more rung).
- ``eps_forecast``: gradient RMS per LR, extrapolated; fails if any LR is
  forecast within ``grad_rms_over_eps`` x AdamW's epsilon.
- ``sensitivity_scaling``: the slope of LR sensitivity against size along
  each ladder (the paper: depth raises it faster than width); report-only.

The µP checks (:data:`MUP_CHECKS`: they assert µP behaviour, and a model in
standard parameterisation fails them by design):

- ``lr_transfer``: the optimal LR (interpolated) stays put across widths.
- ``coordinates``: µP-style coordinate check of activation scale per layer.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from trainstab.checks.battery import Check, CheckResult, Thresholds
from trainstab.checks.forecast import (
    MAX_EXTRAPOLATION_DECADES,
    NEAR_LEVEL_DECADES,
    Forecast,
    LrForecast,
    forecast_attention_logits,
    forecast_gradient_rms,
)
from trainstab.core import values
from trainstab.core.config import CoordinateConfig, SweepConfig
from trainstab.core.ladder import DEFAULT_DEPTHS, DEFAULT_WIDTHS, LadderResult, depth_configs, run_ladder, width_configs
from trainstab.core.option_fields import option
from trainstab.core.results import ATTENTION_DIVERGENCE_LEVEL, CoordinateResult, SweepResult


@dataclass(frozen=True)
class ScalingConfig:
    """Which sizes the scaling checks train."""

    # At the base depth; heads keep the base's head dimension.
    widths: tuple[int, ...] = option(DEFAULT_WIDTHS, "widths", values.size_ladder, "width ladder of the scaling checks")
    # At the base width.
    depths: tuple[int, ...] = option(DEFAULT_DEPTHS, "depths", values.size_ladder, "depth ladder of the scaling checks")
    coordinates: CoordinateConfig = field(default_factory=CoordinateConfig)

    @property
    def confirmation_width(self) -> int:
        """The rung trained when an attention forecast flags on a trend alone: twice the largest width."""
        return 2 * max(self.widths)


#: sensitivity_scaling's bound: LR sensitivity may grow at most this much per decade of parameters along a ladder.
#: On the zoo (benchmarks/calibrate.py --scaling, seed 0, default ladders) the steepest rise of a stable model was
#: +0.111 (hf:gemma3_text, depth); 0.25 leaves 2x above it. The only zoo model above it is the squared-activation
#: model that diverges (+1.16 along depth, +0.67 along width).
SENSITIVITY_SLOPE = 0.25
#: Why sensitivity_scaling only reports by default: measured on the zoo's ladders (28 models, 7 code paths).
SENSITIVITY_SCALING_REPORT_ONLY = (
    "on the calibration zoo the trend does not separate models without qk-norm from stable ones at proxy scale: "
    "LR sensitivity fell with width for 26 of 28 models, and its slope along depth ranged -0.33 to +0.19 per "
    "decade of parameters without qk-norm and -0.24 to +0.11 with it (the reference in post-LN: +0.13); at 200 "
    "steps the low-LR runs are under-trained and improve with size, which hides the paper's rise"
)

#: z_loss_effect: twins whose final losses differ by more than this (nats) went down different trajectories.
SPLIT_LOSS = 0.05
#: z_loss_effect's bounds (nats): the least mean pull of |log Z| toward 0 and the most final loss z-loss may cost.
Z_LOSS_PULL = 0.005
Z_LOSS_COST = 0.05


@dataclass(frozen=True)
class ScalingThresholds:
    """Bounds of the scaling checks; each can be overridden per project."""

    # The size the team will train (non-embedding parameters).
    target_parameters: float = option(
        1e9, "target-params", values.positive, "size the scaling forecasts extrapolate to"
    )
    # The attention forecast is made at most this far past the largest size measured (forecast.py says why).
    max_extrapolation_decades: float = option(
        MAX_EXTRAPOLATION_DECADES,
        "max-extrapolation",
        values.decades,
        "decades past the largest size measured that the attention forecast may extrapolate",
    )
    # LRs of the grid looked at (as the battery's, set by the same option).
    max_lr: float = option(Thresholds.max_lr, "max-lr", values.positive)
    attention_logit: float = ATTENTION_DIVERGENCE_LEVEL  # paper: every run above 1e4 diverged
    # As the battery's, set by the same option: a 9% update shrink at 10x eps.
    grad_rms_over_eps: float = option(Thresholds.grad_rms_over_eps, "grad-rms-over-eps", values.non_negative)
    # sensitivity_scaling: the most LR sensitivity may grow per decade of parameters along a ladder
    # (calibrated on the zoo: benchmarks/calibrate.py --scaling), and whether it only reports.
    sensitivity_slope: float = option(
        SENSITIVITY_SLOPE,
        "sensitivity-slope-bound",
        values.non_negative,
        "max growth of LR sensitivity per decade of parameters along a ladder (sensitivity_scaling)",
    )
    sensitivity_scaling_report_only: bool = True
    lr_drift: float = 0.25  # max |d log10(optimal LR) / d log10(width)|; standard Adam's hidden layers: 1
    # z_loss_effect: z-loss must pull the final |log Z| toward 0 by at least this (nats, mean over the LRs),
    # and cost at most this much of the best final loss (calibrated on the zoo: benchmarks/calibrate.py --z-loss).
    z_loss_pull: float = option(
        Z_LOSS_PULL, "z-loss-pull", values.non_negative, "z_loss_effect: least mean pull of |log Z| toward 0, nats"
    )
    z_loss_cost: float = option(
        Z_LOSS_COST, "z-loss-cost", values.non_negative, "z_loss_effect: most final loss z-loss may cost, nats"
    )
    flags: str = Thresholds.flags  # how messages spell the flags (the front end's)


class Evidence:
    """One model's sweep, ladders and coordinate check, each computed once, when a check first asks.

    ``sweep`` is what the battery reads; the scaling checks read the ladders and the coordinate check.
    """

    def __init__(
        self,
        base: SweepConfig,
        scaling: ScalingConfig | None = None,
        sweeps: Callable[[list[SweepConfig]], list[SweepResult]] | None = None,
    ) -> None:
        self.base = base
        self.scaling = scaling or ScalingConfig()
        self._sweeps = sweeps or _train  # trains a batch of sweeps: the base, or a ladder's rungs together

    @functools.cached_property
    def sweep(self) -> SweepResult:
        """The base model's sweep: what the battery reads."""
        (result,) = self._sweeps([self.base])
        return result

    def sweeps_read_by(self, checks: Iterable[str]) -> list[SweepConfig]:
        """The sweeps the named checks read (:data:`SWEEPS_READ`; a battery check reads the base sweep).
        What a Ray run trains as one batch up front."""
        configs = {
            "base": lambda: [self.base],
            "without_z_loss": lambda: [self.without_z_loss_config],
            "width": lambda: width_configs(self.base, self.scaling.widths),
            "depth": lambda: depth_configs(self.base, self.scaling.depths),
        }
        return [config for name in checks for read in SWEEPS_READ.get(name, ("base",)) for config in configs[read]()]

    @property
    def without_z_loss_config(self) -> SweepConfig:
        """The base sweep with z-loss off: the twin :func:`check_z_loss_effect` compares it with."""
        return dataclasses.replace(self.base, train=dataclasses.replace(self.base.train, z_loss=0.0))

    @functools.cached_property
    def without_z_loss(self) -> SweepResult:
        """The base model's sweep with z-loss off."""
        (result,) = self._sweeps([self.without_z_loss_config])
        return result

    @functools.cached_property
    def width_ladder(self) -> LadderResult:
        """The base model's sweep at every width of the plan."""
        return run_ladder("width", width_configs(self.base, self.scaling.widths), self._sweeps)

    @functools.cached_property
    def confirmed_width_ladder(self) -> LadderResult:
        """The width ladder with one more rung at :attr:`ScalingConfig.confirmation_width`: trained only when a
        forecast from the ladder flags on a trend alone (see :func:`check_attention_forecast`)."""
        (extra,) = width_configs(self.base, (self.scaling.confirmation_width,))
        (rung,) = run_ladder("width", [extra], self._sweeps).rungs
        ladder = self.width_ladder
        return LadderResult(ladder.axis, tuple(sorted((*ladder.rungs, rung), key=lambda r: r.parameters)))

    @functools.cached_property
    def depth_ladder(self) -> LadderResult:
        """The base model's sweep at every depth of the plan."""
        return run_ladder("depth", depth_configs(self.base, self.scaling.depths), self._sweeps)

    @functools.cached_property
    def coordinates(self) -> CoordinateResult:
        """The coordinate check of the base model across the plan's coordinate widths."""
        from trainstab.train.coordinates import coordinate_check  # training: torch is imported when a check asks

        return coordinate_check(self.base, self.scaling.coordinates)


def _train(configs: list[SweepConfig]) -> list[SweepResult]:
    """Train sweeps in this process, as one batch (when no caching sweep function was given)."""
    from trainstab.train.sweep import run_sweeps  # training: torch is imported when a ladder is trained

    return run_sweeps(configs)


def _forecast_verdict(name: str, forecast: Forecast, hint: str, t: ScalingThresholds) -> CheckResult:
    """A check result from a forecast: fails on the first flagged LR."""
    flagged = forecast.flagged
    if not flagged:
        # The worst forecast, or where no forecast was made (no trend, out of reach) the worst measured value:
        # never the bound of an out-of-reach rule, which is not a measurement.
        def closest(f: LrForecast) -> float:
            if f.fit is not None:
                return f.forecast
            return max(f.measured) if forecast.direction == "above" else min(f.measured)

        worst = max(forecast.per_lr, key=lambda f: closest(f) if forecast.direction == "above" else -closest(f))
        return CheckResult(name, True, closest(worst), forecast.level, worst.lr, forecast.describe(t.flags))
    first = min(flagged, key=lambda f: f.lr)
    where = (
        f"measured already at {first.already_at} parameters"
        if first.already_at is not None
        else f"forecast {first.forecast:.3g} at {forecast.forecast_parameters:.3g} parameters"
    )
    message = (
        f"{forecast.metric} crosses {forecast.level:.3g} at lr={first.lr:g} ({where}) and at "
        f"{len(flagged) - 1} more LR(s): {hint}\n{forecast.describe(t.flags)}"
    )
    return CheckResult(name, False, first.forecast, forecast.level, first.lr, message)


def near_miss(forecast: Forecast) -> LrForecast | None:
    """The LR whose fitted forecast came closest to the level without crossing it, if within
    :data:`~trainstab.checks.forecast.NEAR_LEVEL_DECADES` of it (None when none did, or when an LR crossed)."""
    if forecast.flagged:
        return None
    fitted = [f for f in forecast.per_lr if f.fit is not None and math.isfinite(f.forecast)]
    closest = max(fitted, key=lambda f: f.forecast, default=None)
    if closest is None or closest.forecast < forecast.level / 10**NEAR_LEVEL_DECADES:
        return None
    return closest


def check_attention_forecast(evidence: Evidence, t: ScalingThresholds) -> CheckResult:
    """No LR up to ``max_lr`` is forecast to pass the attention-logit level at the target size.

    Three sizes span 0.6 decades: a forecast that rests on them alone and lands within a decade of the level,
    on either side, is decided on one more rung, twice the largest width, and the verdict is the forecast from
    all four sizes.

    - A flag on a trend alone (no size measured at the level) is confirmed before it fails: a stable model's
      clean rise can bend at the next size (hf:olmo2 at LR 0.3 on issue 13's machine: 83.6, 140, 405, then 197
      at width 128). On the zoo (benchmarks/calibrate.py --scaling) every such confirmation was of a model
      without qk-norm, and every one held.
    - A clear forecast within a decade of the level (:func:`near_miss`) is confirmed before it passes: the zoo's
      post-LN encoder stack (``torch.nn.TransformerEncoderLayer``, no qk-norm) was forecast 1.06e4, 8.87e3 and
      4.36e3 at 1e7 parameters under seeds 0, 1 and 2, and measured 1.39e5 at 1.6e6 parameters (width 256) and
      2.14e5 at 6.3e6 (benchmarks/validate_forecast.py): its growth speeds up with size, which a power law through
      three sizes misses. No stable zoo model's forecast came within a decade (the largest: 752), so stable
      models train no extra rung.
    """
    advice = attention_advice(evidence.base, t.flags)

    def forecast_from(ladder: LadderResult) -> Forecast:
        return forecast_attention_logits(
            ladder, t.target_parameters, t.attention_logit, t.max_lr, max_decades=t.max_extrapolation_decades
        )

    forecast = forecast_from(evidence.width_ladder)
    on_trend_alone = bool(forecast.flagged) and all(f.already_at is None for f in forecast.flagged)
    close = near_miss(forecast)
    if not (on_trend_alone or close) or evidence.scaling.confirmation_width <= max(evidence.scaling.widths):
        return _forecast_verdict("attention_forecast", forecast, advice, t)
    width = evidence.scaling.confirmation_width
    confirmed = forecast_from(evidence.confirmed_width_ladder)
    result = _forecast_verdict("attention_forecast", confirmed, advice, t)
    if close is not None:
        why = (
            f"the ladder's forecast for lr={close.lr:g} came within a decade of the level ({close.forecast:.3g} at "
            f"{forecast.forecast_parameters:.3g} parameters), so width {width} was trained to decide it: "
            + ("the four sizes cross it" if not result.passed else "the four sizes stay clear")
        )
    else:
        first = min(forecast.flagged, key=lambda f: f.lr)
        why = (
            f"the ladder's trend flagged lr={first.lr:g} (forecast {first.forecast:.3g} at "
            f"{forecast.forecast_parameters:.3g} parameters), so width {width} was trained to confirm it: "
            + ("the trend held" if not result.passed else "the trend did not hold")
        )
    return dataclasses.replace(result, message=f"{why}; {result.message}")


def attention_advice(base: SweepConfig, flags: str = Thresholds.flags) -> str:
    """What to do about attention logits forecast to grow past the level, for the model at hand."""
    paper = "the paper saw every run above 1e4 diverge"
    if base.model_name == "reference":
        if base.model.qk_layernorm:
            return f"{paper}; the model has qk-layernorm already: lower the peak LR or lengthen the warm-up"
        return f"{paper}; consider qk-layernorm ({flags}set qk_layernorm=true)"
    return (
        f"{paper}; if {base.model_name} has no qk-layernorm, add it (layer-normalise q and k per head before "
        "q @ k^T); if it has, lower the peak LR or lengthen the warm-up"
    )


def check_eps_forecast(evidence: Evidence, t: ScalingThresholds) -> CheckResult:
    """No LR's gradient RMS is forecast to reach ``grad_rms_over_eps`` x AdamW's eps at the target size."""
    forecast = forecast_gradient_rms(evidence.width_ladder, t.target_parameters, t.grad_rms_over_eps, t.max_lr)
    return _forecast_verdict(
        "eps_forecast",
        forecast,
        f"updates will shrink and learning stall at that size; consider eps=1e-15 ({t.flags}set eps=1e-15)",
        t,
    )


def sensitivity_slope(ladder: LadderResult) -> float:
    """Change of LR sensitivity per decade of parameters along a ladder (least squares)."""
    x = [math.log10(parameters) for parameters in ladder.parameters]
    return statistics.linear_regression(x, [rung.sweep.lr_sensitivity for rung in ladder.rungs]).slope


def _sensitivities(ladder: LadderResult) -> str:
    """``width=32 (2.5e4 parameters): 0.197, ...``: each rung's LR sensitivity, with its size."""
    return ", ".join(f"{r.label} ({r.parameters:.2g} parameters): {r.sweep.lr_sensitivity:.3f}" for r in ladder.rungs)


def check_sensitivity_scaling(evidence: Evidence, t: ScalingThresholds) -> CheckResult:
    """LR sensitivity does not grow with size: along each ladder, its least-squares slope per decade of
    non-embedding parameters stays at or below ``sensitivity_slope``.

    What the paper measured (LR sensitivity against model size, with and without each remedy), not the worst
    value at any rung: the smallest rung is the least trained, and its high sensitivity is no sign of trouble at
    scale. A gross problem at the base size is the battery's ``lr_sensitivity``. Report-only by default
    (``SENSITIVITY_SCALING_REPORT_ONLY`` says why).
    """
    ladders = (evidence.width_ladder, evidence.depth_ladder)
    slopes = {ladder.axis: sensitivity_slope(ladder) for ladder in ladders}
    steepest = max(ladders, key=lambda ladder: slopes[ladder.axis])
    slope = slopes[steepest.axis]
    table = "; ".join(
        f"{ladder.axis}: {_sensitivities(ladder)} (slope {slopes[ladder.axis]:+.3f})" for ladder in ladders
    )
    passed = slope <= t.sensitivity_slope
    if passed:
        trend = "falls" if slope < 0 else "grows by at most"
        message = (
            f"LR sensitivity {trend} {abs(slope):.3f} per decade of parameters along the {steepest.axis} ladder "
            f"(bound {t.sensitivity_slope:+g}; {table})"
        )
    else:
        largest = steepest.rungs[-1]
        message = (
            f"LR sensitivity grows with size along the {steepest.axis} ladder: {slope:+.3f} per decade of "
            f"parameters (bound {t.sensitivity_slope:+g}), to {largest.sweep.lr_sensitivity:.3f} at its largest "
            f"rung, {largest.label} ({largest.parameters:.3g} parameters) ({table}): the model gets harder to tune "
            "as it grows; consider qk-layernorm, z-loss, a longer warm-up or independent weight decay"
        )
    if t.sensitivity_scaling_report_only:
        if passed:
            message += " (report-only)"
        else:
            message += f" [report-only, so the test passes: {SENSITIVITY_SCALING_REPORT_ONLY}]"
    lr = steepest.rungs[-1].sweep.best_lr
    return CheckResult(
        "sensitivity_scaling", passed, slope, t.sensitivity_slope, lr, message, not t.sensitivity_scaling_report_only
    )


def optimal_lr(sweep: SweepResult) -> float:
    """The LR of lowest capped loss, refined by a parabola in log10(LR) through it and its neighbours.

    On a grid a half-decade apart the argmin alone hides drifts smaller than
    a grid step; the vertex does not. At the grid's edge the argmin is returned.
    """
    runs = sorted(sweep.runs, key=lambda run: run.lr)
    losses = [run.capped_loss() for run in runs]
    i = losses.index(min(losses))
    if i == 0 or i == len(runs) - 1:
        return runs[i].lr
    x = [math.log10(runs[j].lr) for j in (i - 1, i, i + 1)]
    y = losses[i - 1 : i + 2]
    # The parabola a x^2 + b x + c through the three points, from its divided differences.
    left, right = (y[1] - y[0]) / (x[1] - x[0]), (y[2] - y[1]) / (x[2] - x[1])
    a = (right - left) / (x[2] - x[0])
    b = left - a * (x[0] + x[1])
    vertex = -b / (2 * a) if a > 0 else x[1]
    return float(10 ** min(max(vertex, x[0]), x[2]))


def lr_drift(ladder: LadderResult) -> float:
    """d log10(optimal LR) / d log10(width) along a width ladder (least squares)."""
    widths = [math.log10(rung.sweep.config.model.width) for rung in ladder.rungs]
    optima = [math.log10(optimal_lr(rung.sweep)) for rung in ladder.rungs]
    return statistics.linear_regression(widths, optima).slope


def mup_advice(model_name: str, flags: str = Thresholds.flags) -> str:
    """How to adopt µParam: a ``--set`` key for the reference; in the model's own code for any other model."""
    if model_name == "reference":
        return f"consider µParam ({flags}set parameterization=mup_simple)"
    return (
        "consider µParam in your model (hidden layers' LR scaled by base_width / width and their init by "
        "1/sqrt(fan_in), as trainstab's reference does under parameterization=mup_simple)"
    )


def check_lr_transfer(evidence: Evidence, t: ScalingThresholds) -> CheckResult:
    """The optimal LR does not drift with width (what µParam promises)."""
    ladder = evidence.width_ladder
    drift = lr_drift(ladder)
    optimal = [optimal_lr(r.sweep) for r in ladder.rungs]
    optima = ", ".join(f"{r.label}: {lr:.3g}" for r, lr in zip(ladder.rungs, optimal, strict=True))
    # A drift is a trend: the optimum moving one way as width grows. An optimum that jumps back and forth (a
    # user model measured 0.0313, 0.0484, 0.001) sits on a flat loss curve, and a slope through it measures noise.
    steps = [b / a for a, b in itertools.pairwise(optimal)]
    one_way = all(s <= 1 for s in steps) or all(s >= 1 for s in steps)
    passed = abs(drift) <= t.lr_drift or not one_way
    if abs(drift) <= t.lr_drift:
        message = f"optimal LR stays put across widths ({optima}; drift {drift:+.2f} decades per decade of width)"
    elif not one_way:
        message = (
            f"the optimal LR does not move one way with width ({optima}): the loss is flat near its minimum and "
            f"the slope through it ({drift:+.2f} decades per decade) measures noise, not a drift; more steps or "
            f"a finer LR grid ({t.flags}lrs) would tell"
        )
    else:
        message = (
            f"the optimal LR drifts with width ({optima}; {drift:+.2f} decades per decade of width, bound "
            f"{t.lr_drift:g}): an LR tuned on a small model will be wrong on the large one; "
            + mup_advice(evidence.base.model_name, t.flags)
        )
    return CheckResult("lr_transfer", passed, drift, t.lr_drift, None, message)


def check_coordinates(evidence: Evidence, t: ScalingThresholds) -> CheckResult:
    """Activation scale per layer stays put across widths over the first steps (µP coordinate check)."""
    result = evidence.coordinates
    layer = result.worst_layer
    slopes = ", ".join(f"layer{i}: {s:+.2f}" for i, s in enumerate(result.slopes))
    widths = ", ".join(str(w) for w in result.widths)
    steps = len(result.rms[0]) - 1
    message = (
        f"activation RMS is width-independent after {steps} steps (slopes vs width {slopes}; band {result.band:g})"
        if result.passed
        else f"activation RMS of layer{layer} grows as width^{result.slopes[layer]:.2f} after {steps} steps "
        f"(widths {widths}; slopes {slopes}; band +-{result.band:g}): the parameterization does not transfer "
        "across widths; " + mup_advice(evidence.base.model_name, t.flags)
    )
    return CheckResult("coordinates", result.passed, result.slopes[layer], result.band, None, message)


def check_z_loss_effect(evidence: Evidence, t: ScalingThresholds) -> CheckResult:
    """z-loss does its job on this model: against a twin trained without it, the final |log Z| is pulled
    toward 0 by at least ``z_loss_pull`` nats (mean over the LRs up to ``max_lr`` where neither diverged and
    the twins stayed on one trajectory), and the best final loss is at most ``z_loss_cost`` nats worse."""

    def refused(why: str) -> CheckResult:
        return CheckResult("z_loss_effect", False, 0.0, t.z_loss_pull, None, why)

    coefficient = evidence.base.train.z_loss
    if coefficient <= 0:
        return refused(
            f"z-loss is off for this model (z_loss=0): there is no effect to measure; set the coefficient to check "
            f"({t.flags}set z_loss=1e-4, PaLM's)"
        )
    with_z = {run.lr: run for run in evidence.sweep.runs}
    pairs = [
        (with_z[off.lr], off)
        for off in evidence.without_z_loss.runs
        if off.lr in with_z and off.lr <= t.max_lr and not off.diverged and not with_z[off.lr].diverged
    ]
    if not pairs:
        return refused("every LR diverged with or without z-loss: nothing to compare")
    # At a chaotic high LR z-loss's nudge sends the run down another trajectory, whose log Z then moves either
    # way by more than z-loss moves it (hf:qwen3 at LR 0.1: |log Z| 5.619 -> 5.672, loss +0.25). The pull is
    # measured at the LRs whose twins stayed together (final losses within SPLIT_LOSS); when none did, z-loss
    # itself moved every loss (a large coefficient), and every LR counts.
    together = [(on, off) for on, off in pairs if abs(on.final_loss - off.final_loss) <= SPLIT_LOSS] or pairs
    pull = statistics.fmean(abs(off.log_z_mean) - abs(on.log_z_mean) for on, off in together)
    # The cost at the best LR: what a team trains at.
    best_on = min((on for on, _ in pairs), key=lambda run: run.final_loss)
    best_off = min((off for _, off in pairs), key=lambda run: run.final_loss)
    cost = best_on.final_loss - best_off.final_loss
    table = ", ".join(
        f"lr {on.lr:g}: |log Z| {abs(off.log_z_mean):.3f} -> {abs(on.log_z_mean):.3f}" for on, off in together
    )
    if pull < t.z_loss_pull:
        message = (
            f"z-loss {coefficient:g} pulled |log Z| toward 0 by {pull:.4f} nats on average, less than "
            f"{t.z_loss_pull:g} ({table}): it does not act on this model's output logits. A model that returns "
            "log-probabilities (log_softmax) has log Z = 0 whatever its weights, so z-loss has no gradient; one "
            "whose logits are fixed by something the loss cannot move (a frozen or detached head) neither "
            f"(override with {t.flags}z-loss-pull)"
        )
    elif cost > t.z_loss_cost:
        message = (
            f"z-loss {coefficient:g} cost {cost:.4f} nats of the best final loss ({best_on.final_loss:.4f} at "
            f"lr={best_on.lr:g}, against {best_off.final_loss:.4f} at lr={best_off.lr:g} without it), more than "
            f"{t.z_loss_cost:g}: the coefficient is too large for this model; try a smaller one "
            f"(override with {t.flags}z-loss-cost)"
        )
    else:
        message = (
            f"z-loss {coefficient:g} pulled |log Z| toward 0 by {pull:.4f} nats on average (>= {t.z_loss_pull:g}) "
            f"and cost {cost:+.4f} nats of the best final loss ({table})"
        )
    passed = pull >= t.z_loss_pull and cost <= t.z_loss_cost
    return CheckResult("z_loss_effect", passed, pull, t.z_loss_pull, best_on.lr, message)


#: The stability forecasts: will the trend of the ladder stay stable at the target size? What a model in any
#: parameterisation should pass.
STABILITY_FORECASTS: dict[str, Check] = {
    check.name: check
    for check in (
        Check(
            "attention_forecast",
            check_attention_forecast,
            (),
            "scaling",
            reads=("width",),
            options=("max-lr", "target-params", "max-extrapolation"),
        ),
        Check(
            "eps_forecast",
            check_eps_forecast,
            (),
            "scaling",
            reads=("width",),
            options=("max-lr", "grad-rms-over-eps", "target-params"),
        ),
        Check(
            "sensitivity_scaling",
            check_sensitivity_scaling,
            (),
            "scaling",
            reads=("width", "depth"),
            options=("sensitivity-slope-bound",),
        ),
    )
}
#: The µP checks: assert µP behaviour (the optimal LR and activation scale independent of width); a model in
#: standard parameterisation fails them by design.
MUP_CHECKS: dict[str, Check] = {
    check.name: check
    for check in (
        Check("lr_transfer", check_lr_transfer, (), "scaling", reads=("width",)),
        Check("coordinates", check_coordinates, (), "scaling", reads=()),  # trains its own short runs
    )
}
#: The scaling checks (both groups), in the order they are reported (after the battery). No baselines: they
#: gate on bounds.
SCALING_CHECKS: dict[str, Check] = {**STABILITY_FORECASTS, **MUP_CHECKS}
#: Checks that train the model twice, with and without a remedy, and hold the difference: opt in by name.
PAIRED_CHECKS: dict[str, Check] = {
    "z_loss_effect": Check(
        "z_loss_effect",
        check_z_loss_effect,
        (),
        "scaling",
        reads=("base", "without_z_loss"),
        options=("max-lr", "z-loss-pull", "z-loss-cost"),
    )
}
#: The sweeps each check beyond the battery reads (a battery check reads the base sweep): stated on each check.
SWEEPS_READ: dict[str, tuple[str, ...]] = {
    check.name: check.reads for check in (*SCALING_CHECKS.values(), *PAIRED_CHECKS.values())
}
