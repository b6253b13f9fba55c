"""A change judged against its base: each check's statistic on both, over seeds, and the noise of the pair.

``--trainstab-against REF`` trains the model as the change has it (the head) and as the base revision has it
(the base) with the same protocol, on ``seeds`` seeds each, in one run. For every check this module compares the
number the check asserts on (its ``paired`` statistic: per LR for attention logits and log Z, once per sweep for
LR sensitivity), side by side:

1. per seed, the statistic on each side; a statistic that spans decades (the max attention logit, the gradient
   RMS) is compared in log10, the others as they are;
2. the **difference**: the mean over the head's seeds minus the mean over the base's, signed so that positive is
   worse (the statistic's ``Tolerance.worse``);
3. the **band**: ``spread_factor`` times the larger seed-to-seed spread (max minus min) of the two sides, plus
   the statistic's baseline tolerance at the base's value (what a change of CPU kernels moves it by: the same
   tolerance a committed baseline allows); a yes/no or a count (divergence, frozen tensors) gets the tolerance
   alone, so a head run that diverges where no base run did is worse;
4. the head is **worse** when the difference exceeds the band at any LR the check looks at.

The seeds measure the noise of this model under this protocol, not a constant: a harmless change that re-draws
the initialisation moves the numbers by about the seed spread, and stays inside the band; removing qk-norm moves
attention logits by decades. The rule and its factor were chosen on the zoo (``benchmarks/calibrate_paired.py``):
unchanged models compared across seeds and across CPU kernel sets, and real regressions (qk-norm removed, a 10x
init). An LR where a run on either side has no number (it diverged before the first probe) is not compared;
``no_divergence`` compares divergence itself. Imports no torch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from trainstab.checks.battery import Check, Thresholds
from trainstab.core import values
from trainstab.core.config import SweepConfig
from trainstab.core.option_fields import option
from trainstab.core.results import Metric, SweepResult, runs_up_to

#: What the comparison found: ``worse`` beyond the band; ``within`` the band; ``not compared``: no base to compare
#: with (a model only the head has, or one built into trainstab), judged by its absolute bound alone.
PairedStatus = Literal["worse", "within", "not compared"]


@values.accepts("a whole number of seeds, at least 3")
def seed_count(value: object) -> int:
    """A number of seeds for the paired comparison: at least 3, so the spread of each side means something."""
    count = values.positive_int(value)
    return values.accepted(count, count >= 3, value)


@dataclass(frozen=True)
class PairedRule:
    """How a change is compared with its base (``--trainstab-against``)."""

    # Each side trains these seeds: the run's seed and the next ones. The spread over them is the pair's noise.
    seeds: int = option(3, "against-seeds", seed_count, "seeds each side trains for --against (at least 3)")
    # The band is this many seed spreads (plus the statistic's kernel tolerance): benchmarks/calibrate_paired.py.
    spread_factor: float = 1.0


@dataclass(frozen=True)
class Difference:
    """One compared statistic at one LR (``lr`` None: once per sweep): both sides per seed, and the call."""

    statistic: str  # the metric's name, e.g. "max_attention_logit"
    lr: float | None
    base: tuple[float, ...]  # per seed, as measured (NaN where a run diverged)
    head: tuple[float, ...]
    difference: float  # mean(head) - mean(base) in the compared scale, positive = worse; NaN if not compared
    band: float  # how far the difference may go (same scale)
    scale: Literal["linear", "log10"]

    @property
    def worse(self) -> bool:
        """The head is worse than the base beyond the band here."""
        return math.isfinite(self.difference) and self.difference > self.band

    def cells(self, units: bool = True) -> tuple[str, str, str, str, str]:
        """The LR, both sides' means, the difference and the band, as a summary table shows them (``units``: " dex"
        after a log10 difference and band)."""
        unit = " dex" if self.scale == "log10" and units else ""
        moved = f"{self.difference:+.2g}{unit}" if math.isfinite(self.difference) else "-"
        band = f"{self.band:.2g}{unit}" if math.isfinite(self.band) else "-"
        lr = f"{self.lr:g}" if self.lr is not None else "-"
        return lr, _mean_shown(self.base, short=True), _mean_shown(self.head, short=True), moved, band

    def describe(self) -> str:
        """One line: where, both sides' means, the difference and its band."""
        where = f" at lr={self.lr:g}" if self.lr is not None else ""
        unit = " dex" if self.scale == "log10" else ""
        return (
            f"{self.statistic}{where}: base {_mean_shown(self.base)}, head {_mean_shown(self.head)}, difference "
            f"{self.difference:+.3g}{unit} (band {self.band:.3g}{unit})"
        )


@dataclass(frozen=True)
class HeadVsBase:
    """A check's paired comparison: every compared statistic, and whether the head is worse."""

    check: str
    status: PairedStatus
    against: str  # the base as logs name it: "main (3f2a9c1d0e4b)"
    seeds: tuple[int, ...]
    differences: tuple[Difference, ...] = ()
    why: str = ""  # for "not compared": why there is no base

    @property
    def worst(self) -> Difference | None:
        """The difference furthest beyond (or nearest to) its band."""
        finite = [d for d in self.differences if math.isfinite(d.difference)]
        return max(finite, key=lambda d: d.difference - d.band, default=None)

    def message(self) -> str:
        """What the comparison says, in one paragraph."""
        if self.status == "not compared":
            return f"not compared with {self.against}: {self.why}; judged by its absolute bound alone"
        seeds = f"seeds {','.join(map(str, self.seeds))}"
        worse = [d for d in self.differences if d.worse]
        if worse:
            lines = [f"worse than {self.against} beyond the noise of the pair ({seeds}):"]
            lines += [f"  {d.describe()}" for d in worse]
            return "\n".join(lines)
        worst = self.worst
        closest = f"; closest: {worst.describe()}" if worst is not None else ""
        return f"within the noise of {self.against} ({seeds}){closest}"


def _mean_shown(values_: tuple[float, ...], short: bool = False) -> str:
    """The mean over the seeds, and how many runs had no number (diverged); ``short``: a star for them."""
    finite = [v for v in values_ if math.isfinite(v)]
    if not finite:
        return "diverged"
    mean = statistics.fmean(finite)
    if len(finite) == len(values_):
        return f"{mean:.3g}" if short else f"{mean:.4g}"
    return f"{mean:.3g}*" if short else f"{mean:.4g} ({len(values_) - len(finite)} diverged)"


def seed_configs(config: SweepConfig, rule: PairedRule) -> list[SweepConfig]:
    """The sweeps each side trains: ``config`` at its seed and the next ``rule.seeds - 1`` seeds."""
    first = config.train.seed
    return [replace(config, train=replace(config.train, seed=first + i)) for i in range(rule.seeds)]


def paired_statistic(check: Check) -> Metric | None:
    """The statistic a check is compared with its base on: its row's ``paired``, else the first metric its
    baseline gates (a team's check); None for a check with neither."""
    if check.paired is not None:
        return check.paired
    return next((metric for metric in check.metrics if metric.tolerance is not None), None)


def _measured(metric: Metric, sweep: SweepResult, bounds: Thresholds) -> dict[float | None, float]:
    """The statistic on one sweep: per LR the checks look at (``max_lr``), or once (key None)."""
    if not metric.per_lr:
        return {None: _number(metric.measure(sweep, bounds))}
    return {run.lr: _number(metric.measure(run, sweep, bounds)) for run in runs_up_to(sweep, bounds.max_lr)}


def _number(value: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else math.nan


def compare(
    check: Check,
    base: Sequence[SweepResult],
    head: Sequence[SweepResult],
    bounds: Thresholds,
    rule: PairedRule,
    against: str,
) -> HeadVsBase:
    """The paired comparison of ``check`` on the head's sweeps against the base's, seed for seed (module docstring)."""
    seeds = tuple(sweep.config.train.seed for sweep in head)
    metric = paired_statistic(check)
    if metric is None or metric.tolerance is None:
        return HeadVsBase(check.name, "not compared", against, seeds, why=f"{check.name} has no statistic to compare")
    base_values = [_measured(metric, sweep, bounds) for sweep in base]
    head_values = [_measured(metric, sweep, bounds) for sweep in head]
    keys = [key for key in head_values[0] if all(key in side for side in (*base_values, *head_values))]
    differences = tuple(
        difference(metric, key, tuple(v[key] for v in base_values), tuple(v[key] for v in head_values), rule)
        for key in keys
    )
    status: PairedStatus = "worse" if any(d.worse for d in differences) else "within"
    return HeadVsBase(check.name, status, against, seeds, differences)


def difference(
    metric: Metric, lr: float | None, base: tuple[float, ...], head: tuple[float, ...], rule: PairedRule
) -> Difference:
    """One statistic at one LR compared: the difference of the means, and its band (module docstring)."""
    tolerance = metric.tolerance
    assert tolerance is not None  # compare() passes gated statistics only
    scale: Literal["linear", "log10"] = "log10" if metric.log_scale else "linear"
    sign = 1.0 if tolerance.worse == "higher" else -1.0
    shown_base, shown_head = _scaled(base, scale), _scaled(head, scale)
    if not shown_base or not shown_head or len(shown_base) < len(base) or len(shown_head) < len(head):
        # A diverged run on either side has no number here: no_divergence compares divergence itself.
        return Difference(metric.name, lr, base, head, math.nan, math.nan, scale)
    spread = max(max(side) - min(side) for side in (shown_base, shown_head))
    base_mean = statistics.fmean(shown_base)
    move = sign * (statistics.fmean(shown_head) - base_mean)
    if scale == "log10":  # the tolerance is a move from the base's value, read as a ratio
        level = 10**base_mean
        limit = level - tolerance.allowed(level) if sign < 0 else level + tolerance.allowed(level)
        floor = abs(math.log10(limit / level)) if limit > 0 else math.inf
    else:
        floor = tolerance.allowed(base_mean)
    # A yes/no or a count (divergence, frozen tensors) has no seed noise to speak of on the zoo (0 of 84 unchanged
    # cases moved it, benchmarks/calibrate_paired.py): one run more than the base's is worse. A number's band
    # widens with its seeds' spread.
    noise = rule.spread_factor * spread if metric.kind == "number" else 0.0
    return Difference(metric.name, lr, base, head, move, noise + floor, scale)


#: Where a log10 statistic of 0 (a gradient RMS that vanished) sits: far below any measured value, so that it
#: reads as the worst case of a statistic whose lower values are worse, not as a missing number.
LOG10_OF_ZERO = -12.0


def _scaled(measured: tuple[float, ...], scale: str) -> list[float]:
    """The finite values, in the compared scale (0 or below in log10: :data:`LOG10_OF_ZERO`)."""
    finite = [v for v in measured if math.isfinite(v)]
    if scale == "log10":
        return [math.log10(v) if v > 0 else LOG10_OF_ZERO for v in finite]
    return finite
