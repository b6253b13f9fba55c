"""Forecasting instability at a target size from a ladder of tiny ones.

The paper's section on prediction (Wortsman et al. 2023) fits the max
attention logit against model size for each LR on small models, extrapolates
to the target size and flags any LR whose forecast crosses 1e4, the level above
which every run of theirs diverged. The same fit, on gradient RMS, says when
the gradients of a larger model will reach AdamW's epsilon.

The fit is a polynomial in log space: log10(value) against log10(parameters),
by default of degree 1 (a power law); degree 2 is the paper's quadratic. A fit
needs two more sizes than its degree, so that a residual is left to judge it
by: fewer refuse with a :class:`TrainstabError` (bad input), and points
that scatter around the fit by more than ``MAX_RESIDUAL_DEX`` with an
:class:`~trainstab.core.errors.Inconclusive` (what was measured cannot answer).

A quadratic is not extrapolated past a vertex beyond which it would turn
towards the safe side: the trends the paper measured are monotone in size,
and a parabola that turns would forecast that larger models get safer only
because of its shape. Past such a vertex the forecast holds the vertex value.

The default is a power law because forecasts here extrapolate 4 decades (to
1e9 parameters), not the paper's 0.6: measured on widths 32/48/64/96, the
quadratic's curvature noise turned the flat max attention logit of the
qk-layernorm model at LR 0.1 (19, 15, 15, 13) into a false alarm above 1e4,
while a power law on 32/48/64 forecast width 128 within 0.05 decades. The
quadratic suits targets close to the ladder.

Before any fit, an LR is extrapolated only if its values move toward the level
at every size and the steepest trend seen on the zoo could reach it; attention
forecasts stop ``MAX_EXTRAPOLATION_DECADES`` past the largest size by default.
:func:`_forecast` lists the rules.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trainstab.core.errors import Inconclusive, TrainstabError
from trainstab.core.ladder import LadderResult
from trainstab.core.option_fields import PYTEST_FLAGS
from trainstab.core.results import ATTENTION_DIVERGENCE_LEVEL, RunResult, gradient_rms_floor, up_to

#: A fit whose points scatter more than this (RMS, in decades) does not fit: a factor of 2.
MAX_RESIDUAL_DEX = 0.3
#: Fewest sizes a forecast is made from.
MIN_SIZES = 3
#: The steepest fall of gradient RMS with size that a forecast allows for, in decades per decade of parameters:
#: twice the 0.5 of the width^-1 law (parameters grow as width^2). An LR whose smallest measured value stays above
#: the level even at this fall is clear without a fit. Why: at LR 0.3 the floor switches between tensors (q/k-norm
#: gains, an MLP), and on one AVX2 machine its scatter (1.26e-5, 2.56e-5, 2.96e-6) refused the fit, nine decades
#: above eps 1e-15's level, where no trend could reach it.
STEEPEST_GRADIENT_FALL = 1.0
#: The steepest growth of max attention logits with size that a forecast allows for, in decades per decade of
#: parameters: an LR whose largest value stays below the level even at this rise is clear without a fit. Measured
#: on the zoo's width ladders (benchmarks/calibrate.py --forecast): the steepest rise below the level was 1.81
#: (hf:gpt_neox at LR 0.03: 24.1, 84.5, 288); series that had crossed rose up to 2.25 (hf:gpt2 at LR 0.3).
STEEPEST_ATTENTION_GROWTH = 2.0
#: A series whose nearest value is within this many decades of the level is fitted even without a clean trend:
#: so close to the level, a dip between two sizes does not make it safe.
NEAR_LEVEL_DECADES = 1.0
#: How far past the largest measured size an attention forecast extrapolates by default, in decades of parameters.
#: A 3-rung ladder (widths 32/48/64) spans 0.6 decades, and the paper and we have checked such forecasts to +0.6
#: decades only. A power law through three points is a claim that the trend continues; growth of attention logits
#: has no law that says it must (with qk-norm they saturate), so a clean trend at small size flagged stable models
#: at 4 decades: the zoo's GPT-2-init qk-norm model at LR 0.1 measured 7.3, 12.9, 24.4 and was forecast 8.1e4 at
#: 1e9 (1.4e3 at +2 decades). The gradient forecast is not capped: its fall is bounded (STEEPEST_GRADIENT_FALL).
#: Users who trust their trend further ask for more (--trainstab-max-extrapolation).
MAX_EXTRAPOLATION_DECADES = 2.0


@dataclass(frozen=True)
class LogLogFit:
    """log10(value) as a polynomial in log10(parameters)."""

    coefficients: tuple[float, ...]  # highest power first (numpy.polyfit order)
    residuals_dex: tuple[float, ...]  # measured minus fitted log10 value, per size
    held_from_log_params: float | None  # a vertex past which the forecast is held (it would turn safe)

    @property
    def degree(self) -> int:
        """1 (power law) or 2 (the paper's quadratic)."""
        return len(self.coefficients) - 1

    @property
    def residual_rms_dex(self) -> float:
        """Root-mean-square residual in decades (0.3 = a factor of 2)."""
        return math.sqrt(statistics.fmean(r * r for r in self.residuals_dex))

    def predict(self, parameters: float) -> float:
        """The fitted value at ``parameters`` (held at the vertex past one that turns safe)."""
        x = math.log10(parameters)
        if self.held_from_log_params is not None and x > self.held_from_log_params:
            x = self.held_from_log_params
        return float(10 ** polynomial(self.coefficients, x))


def polynomial(coefficients: Sequence[float], x: float) -> float:
    """The polynomial with ``coefficients`` (highest power first, as numpy.polyfit gives them) at ``x``."""
    value = 0.0
    for coefficient in coefficients:
        value = value * x + coefficient
    return value


def fit_log_log(
    parameters: Sequence[float], values: Sequence[float], what: str, unsafe: str = "above", degree: int = 1
) -> LogLogFit:
    """Fit log10(values) against log10(parameters) with a polynomial of ``degree``; ``what`` names the series.

    ``unsafe`` is the side that matters ("above": growth is the risk, "below":
    shrinking is), which decides at which vertex the forecast is held.
    """
    if degree not in (1, 2):
        raise TrainstabError(f"fit degree {degree} is not supported: use 1 (power law) or 2 (the paper's quadratic)")
    needed = max(MIN_SIZES, degree + 2)
    if len(parameters) < needed:
        raise TrainstabError(
            f"cannot forecast {what} from {len(parameters)} size(s) with a degree-{degree} fit; measure at least "
            f"{needed} (e.g. widths 32,48,64{',96' if needed > 3 else ''})"
        )
    if any(not (v > 0 and math.isfinite(v)) for v in values):
        raise Inconclusive(f"cannot forecast {what}: measured values {list(values)} must be positive and finite")
    import numpy as np  # here, not at the top: the pytest plugin imports this module and starts without numpy

    x = np.log10(np.asarray(parameters, dtype=np.float64))
    y = np.log10(np.asarray(values, dtype=np.float64))
    coefficients = np.polyfit(x, y, degree)
    residuals = y - np.polyval(coefficients, x)
    held = None
    # Concave turns down (safe when growth is the risk), convex turns up (safe when shrinking is).
    if degree == 2 and (coefficients[0] < 0) == (unsafe == "above") and coefficients[0] != 0:
        held = float(-coefficients[1] / (2 * coefficients[0]))
    fit = LogLogFit(tuple(float(c) for c in coefficients), tuple(float(r) for r in residuals), held)
    if fit.residual_rms_dex > MAX_RESIDUAL_DEX:
        shown = ", ".join(f"{v:.3g}" for v in values)
        raise Inconclusive(
            f"the {what} does not follow a {['', 'power law', 'quadratic'][degree]} in log space "
            f"(values {shown} at {', '.join(f'{p:.3g}' for p in parameters)} parameters; residual RMS "
            f"{fit.residual_rms_dex:.2f} decades > {MAX_RESIDUAL_DEX}); refusing to extrapolate: add sizes "
            "or more steps so the trend is clear"
        )
    return fit


@dataclass(frozen=True)
class LrForecast:
    """The forecast of one LR of the grid."""

    lr: float
    measured: tuple[float, ...]  # per size, smallest first (NaN where the run diverged)
    fit: LogLogFit | None  # None when nothing was extrapolated (see ``why_no_fit``)
    forecast: float  # the value forecast at the horizon (inf if already crossed; a bound when not fitted)
    crosses: bool  # forecast (or measurement) on the wrong side of the level
    already_at: int | None  # parameters of the smallest size that crossed when measured
    why_no_fit: str = ""  # why the series was not extrapolated, when it was not
    refused: bool = False  # its points scatter too much to fit (``why_no_fit`` says how): no forecast either way


@dataclass(frozen=True)
class Forecast:
    """A metric forecast at a target size for every LR of a ladder."""

    metric: str  # e.g. "max attention logit"
    level: float  # the level that must not be crossed
    direction: str  # "above" (attention logits) or "below" (gradient RMS)
    target_parameters: float
    parameters: tuple[int, ...]  # the ladder's sizes
    per_lr: tuple[LrForecast, ...]
    horizon_parameters: float = math.inf  # the forecast is made at min(target, horizon): the extrapolation cap

    @property
    def forecast_parameters(self) -> float:
        """Where the forecast is made: the target, or the cap's horizon when the target lies beyond it."""
        return min(self.target_parameters, self.horizon_parameters)

    @property
    def flagged(self) -> list[LrForecast]:
        """The LRs forecast (or measured) to cross the level."""
        return [f for f in self.per_lr if f.crosses]

    @property
    def extrapolation_decades(self) -> float:
        """How far beyond the largest measured size the target lies, in decades."""
        return math.log10(self.target_parameters / max(self.parameters))

    def describe(self, flags: str = PYTEST_FLAGS) -> str:
        """One line per LR: measured values, the fit and the forecast; ``flags`` spells the front end's flags."""
        lines = [
            f"{self.metric} at {self.target_parameters:.3g} non-embedding parameters "
            f"({self.extrapolation_decades:+.1f} decades from the largest size measured, "
            f"{max(self.parameters):.3g}); level {self.level:g} ({self.direction})"
        ]
        if self.forecast_parameters < self.target_parameters:
            capped = math.log10(self.horizon_parameters / max(self.parameters))
            lines.append(
                f"  forecast at {self.forecast_parameters:.3g} parameters, {capped:.1f} decades out (the extrapolation "
                f"cap): the target lies further than a {len(self.parameters)}-size ladder can vouch for; measure "
                f"larger sizes ({flags}widths) or allow more ({flags}max-extrapolation)"
            )
        for f in self.per_lr:
            measured = " ".join(f"{v:.3g}" for v in f.measured)
            if f.fit is None and f.already_at is not None:
                lines.append(f"  lr={f.lr:g}: measured {measured}: crossed already at {f.already_at} parameters")
                continue
            if f.refused:
                lines.append(f"  lr={f.lr:g}: measured {measured}; no forecast: {f.why_no_fit}")
                continue
            if f.fit is None:
                lines.append(f"  lr={f.lr:g}: measured {measured}; {f.why_no_fit}: stays clear (not extrapolated)")
                continue
            vertex = f.fit.held_from_log_params
            held = (
                " (held at the fit's vertex)"
                if vertex is not None and (math.log10(self.forecast_parameters) > vertex)
                else ""
            )
            verdict = "CROSSES" if f.crosses else "stays clear"
            lines.append(
                f"  lr={f.lr:g}: measured {measured}; degree-{f.fit.degree} fit, residuals "
                f"{' '.join(f'{r:+.2f}' for r in f.fit.residuals_dex)} dex; forecast {f.forecast:.3g}{held}: {verdict}"
            )
        return "\n".join(lines)


def _forecast(
    ladder: LadderResult,
    metric: str,
    value_of: Callable[[RunResult], float],
    level: float,
    direction: str,
    target_parameters: float,
    max_lr: float,
    degree: int,
    steepest: float,
    max_decades: float,
) -> Forecast:
    """Fit and extrapolate ``value_of(run)`` per LR; a diverged run counts as crossed.

    In this order, an LR is:

    1. flagged when a measured size already crossed the level (or diverged);
    2. clear, not extrapolated, when even the steepest trend ``steepest`` (decades per decade of parameters)
       cannot carry its nearest value to the level at the horizon;
    3. clear, not extrapolated, when its values do not move toward the level at every step up in size (there
       is no trend: three noisy points around a flat line fit any slope), unless one is within
       ``NEAR_LEVEL_DECADES`` of the level: so close, the fit decides (and refuses if the points scatter);
    4. otherwise fitted and forecast at the target, or at ``max_decades`` past the largest size if nearer;
       points that scatter too much refuse the fit (no forecast for that LR). The forecast is inconclusive
       (:class:`Inconclusive`) when an LR was refused and none crosses; an LR that crosses decides.
    """
    if len(ladder.rungs) < MIN_SIZES:
        raise TrainstabError(
            f"cannot forecast {metric} from {len(ladder.rungs)} size(s); measure at least {MIN_SIZES} "
            "(e.g. widths 32,48,64)"
        )
    if target_parameters <= 0:
        raise TrainstabError(f"target size {target_parameters:g} must be a positive parameter count, e.g. 1e9")
    if not max_decades > 0:
        raise TrainstabError(f"extrapolation cap {max_decades:g} decades must be positive, e.g. 2")
    lrs = [run.lr for run in ladder.rungs[0].sweep.runs if up_to(run.lr, max_lr)]
    horizon = max(ladder.parameters) * 10**max_decades if max_decades < 100 else math.inf
    at = min(target_parameters, horizon)
    decades = max(math.log10(at / max(ladder.parameters)), 0.0)
    toward = "increasing" if direction == "above" else "falling"
    per_lr = []
    refusals: list[Inconclusive] = []
    for lr in lrs:
        runs = [next(r for r in rung.sweep.runs if math.isclose(r.lr, lr)) for rung in ladder.rungs]
        measured = tuple(math.nan if run.diverged else value_of(run) for run in runs)
        crossed = [
            rung.parameters
            for rung, value in zip(ladder.rungs, measured, strict=True)
            if not math.isfinite(value) or (value > level if direction == "above" else value < level)
        ]
        if crossed:
            bad = math.inf if direction == "above" else 0.0
            per_lr.append(LrForecast(lr, measured, None, bad, True, min(crossed)))
            continue
        if direction == "above":
            bound = max(measured) * 10 ** (steepest * decades)
            out_of_reach = bound < level
        else:
            bound = min(measured) * 10 ** (-steepest * decades)
            out_of_reach = bound > level
        if out_of_reach:
            why = (
                f"even a {'rise' if direction == 'above' else 'fall'} of {steepest:g} decade(s) per decade stays "
                f"{'below' if direction == 'above' else 'above'} {bound:.3g} at {at:.3g} parameters"
            )
            per_lr.append(LrForecast(lr, measured, None, bound, False, None, why))
            continue
        near = (
            max(measured) > level / 10**NEAR_LEVEL_DECADES
            if direction == "above"
            else min(measured) < level * 10**NEAR_LEVEL_DECADES
        )
        moves = all(b > a if direction == "above" else b < a for a, b in itertools.pairwise(measured))
        if not moves and not near:
            nearest = max(measured) if direction == "above" else min(measured)
            why = f"not {toward} with size, so there is no trend to extrapolate"
            per_lr.append(LrForecast(lr, measured, None, nearest, False, None, why))
            continue
        try:
            fit = fit_log_log(ladder.parameters, measured, f"{metric} at lr={lr:g}", direction, degree)
        except Inconclusive as scattered:
            refusals.append(scattered)
            per_lr.append(LrForecast(lr, measured, None, math.nan, False, None, str(scattered), refused=True))
            continue
        value = fit.predict(at)
        crosses = value > level if direction == "above" else value < level
        per_lr.append(LrForecast(lr, measured, fit, value, crosses, None))
    forecast = Forecast(metric, level, direction, target_parameters, tuple(ladder.parameters), tuple(per_lr), horizon)
    if refusals and not forecast.flagged:
        # Nothing crossed, and an LR could not be forecast: not a pass. An LR that crosses decides whatever
        # another LR's scatter: a scattering floor at LR 0.3 does not undo a clean trend to eps at LR 3e-4.
        raise refusals[0]
    return forecast


def forecast_attention_logits(
    ladder: LadderResult,
    target_parameters: float,
    level: float = ATTENTION_DIVERGENCE_LEVEL,
    max_lr: float = math.inf,
    degree: int = 1,
    max_decades: float | None = None,
) -> Forecast:
    """Forecast each LR's max attention logit at ``target_parameters`` (at most ``max_decades`` past the largest
    size measured, default :data:`MAX_EXTRAPOLATION_DECADES`); flag those above ``level``."""
    return _forecast(
        ladder,
        "max attention logit",
        lambda run: run.max_attention_logit,
        level,
        "above",
        target_parameters,
        max_lr,
        degree,
        STEEPEST_ATTENTION_GROWTH,
        MAX_EXTRAPOLATION_DECADES if max_decades is None else max_decades,
    )


def forecast_gradient_rms(
    ladder: LadderResult,
    target_parameters: float,
    ratio_to_eps: float,
    max_lr: float = math.inf,
    degree: int = 1,
) -> Forecast:
    """Forecast each LR's gradient RMS floor at ``target_parameters``; flag those below ``ratio_to_eps`` x eps."""
    train = ladder.rungs[0].sweep.config.train
    return _forecast(
        ladder,
        f"gradient RMS (eps={train.eps:g})",
        lambda run: gradient_rms_floor(run, train.warmup_steps),
        ratio_to_eps * train.eps,
        "below",
        target_parameters,
        max_lr,
        degree,
        STEEPEST_GRADIENT_FALL,
        math.inf,  # not capped: the fall a forecast allows for is bounded by STEEPEST_GRADIENT_FALL
    )
