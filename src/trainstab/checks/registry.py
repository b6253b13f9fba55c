"""Every check trainstab runs, in report order: the battery, a team's own checks, the scaling checks, the paired ones.

The one list the rest derives from: the names ``parametrize_with_checks`` and ``--checks`` accept, the default
set, the order of every report, and which checks have baselines. A team's checks (registered from the modules of
the ``trainstab`` entry-point group: :mod:`trainstab.core.extensions`) are read the first time a list is asked for, so
importing trainstab never imports a team's code.

The module attributes ``CHECKS`` and ``CHECK_NAMES`` are computed on first use for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainstab.checks.battery import BATTERY, Check
from trainstab.checks.scaling import MUP_CHECKS, PAIRED_CHECKS, SCALING_CHECKS, STABILITY_FORECASTS
from trainstab.core import extensions
from trainstab.core.errors import TrainstabError
from trainstab.core.results import Metric

#: The stability forecasts (ladders of sizes): will the model stay stable at the target size? Opt in with
#: ``parametrize_with_checks(models, checks=STABILITY_FORECAST_NAMES)``; a model in any parameterisation should pass.
STABILITY_FORECAST_NAMES = tuple(STABILITY_FORECASTS)
#: The µP checks (ladders of widths, a coordinate check): assert µP behaviour; standard parameterisation fails them
#: by design. Opt in with ``checks=MUP_CHECK_NAMES`` for a model that claims µP.
MUP_CHECK_NAMES = tuple(MUP_CHECKS)
#: Both groups of scaling checks. A model in standard parameterisation fails the µP ones: ask for the group you mean.
SCALING_CHECK_NAMES = tuple(SCALING_CHECKS)
#: Checks that train a model twice, with and without a remedy (z_loss_effect); opt in by name.
PAIRED_CHECK_NAMES = tuple(PAIRED_CHECKS)
#: The attributes computed on first use, because a team's checks are in them: the default set (the battery's
#: checks and a team's that run with it), and every check by name in report order.
LAZY: dict[str, Callable[[], Any]] = {"CHECK_NAMES": lambda: battery_names(), "CHECKS": lambda: all_checks()}
BUILT_IN_CHECKS: dict[str, Check] = {**BATTERY, **SCALING_CHECKS, **PAIRED_CHECKS}


#: Options that configure every check that reads a sweep: the sweep's grid, its length and the cache it comes from.
TRAINING_OPTIONS = ("lrs", "steps", "profile", "cache")
#: Options that configure every check held to baselines (the battery's and a team's).
BASELINE_OPTIONS = ("report-only", "baselines", "update-baseline", "regen-all")
#: The options that configure a team's check beyond those: it reads the battery's bounds (Thresholds), of which
#: these two are not a built-in check's own bound.
TEAM_CHECK_OPTIONS = ("max-lr", "ignore-params")
#: The order options are listed in (the first one given that configures nothing is the one refused).
_OPTION_ORDER = [
    "max-lr",
    "attention-logit-bound",
    "log-z-bound",
    "lr-sensitivity-bound",
    "sensitivity-slope-bound",
    "grad-rms-over-eps",
    "spike-score-bound",
    "report-only",
    "ignore-params",
    "baselines",
    "update-baseline",
    "regen-all",
    "target-params",
    "max-extrapolation",
    "widths",
    "depths",
    "z-loss-pull",
    "z-loss-cost",
    "lrs",
    "steps",
    "profile",
    "cache",
]


def configured_by(checks: dict[str, Check]) -> dict[str, frozenset[str]]:
    """Which of ``checks`` each option configures, from their rows: a check's own ``options``; ``--widths`` and
    ``--depths`` for a check that reads that ladder; the training options for every check that reads a sweep; the
    baseline options for every sweep check."""
    found: dict[str, set[str]] = {}
    for name, check in checks.items():
        implied = [*check.options]
        implied += [f"{ladder}s" for ladder in ("width", "depth") if ladder in check.reads]
        implied += list(TRAINING_OPTIONS) if check.reads else []
        implied += list(BASELINE_OPTIONS) if check.kind == "sweep" else []
        for option in implied:
            found.setdefault(option, set()).add(name)
    order = {option: rank for rank, option in enumerate(_OPTION_ORDER)}
    return {option: frozenset(found[option]) for option in sorted(found, key=lambda o: order.get(o, len(order)))}


def __getattr__(name: str) -> Any:
    """The lazily computed lists (module docstring)."""
    if name in LAZY:
        return LAZY[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def team_checks() -> dict[str, Check]:
    """A team's registered checks as checks like the battery's, in the order registered.

    Refused in one line: a name the built-in checks use, a metric that is not a :class:`~trainstab.core.results.Metric`,
    or a metric name another check records with another definition (a baseline's tolerances are per metric name).
    """
    extensions.load_extensions()
    known: dict[str, Metric] = {metric.name: metric for check in BATTERY.values() for metric in check.metrics}
    checks: dict[str, Check] = {}
    for name, registered in extensions.CHECKS.items():
        if name in BUILT_IN_CHECKS:
            raise TrainstabError(
                f"check {name!r} registered by {registered.source} has the name of a built-in check: give it another"
            )
        for metric in registered.metrics:
            if not isinstance(metric, Metric):
                raise TrainstabError(
                    f"check {name!r} registered by {registered.source}: its metrics must be trainstab.extend.Metric, "
                    f"not {type(metric).__name__}"
                )
            shapes = {"number", "bool", "list"} if metric.per_lr else {"number", "count"}
            if metric.kind not in shapes:
                per = "per LR" if metric.per_lr else "once per sweep (per_lr=False)"
                raise TrainstabError(
                    f"check {name!r} registered by {registered.source}: metric {metric.name!r} is a {metric.kind!r} "
                    f"recorded {per}; a baseline records {' or '.join(sorted(shapes))} that way"
                )
            if known.setdefault(metric.name, metric) is not metric:
                raise TrainstabError(
                    f"check {name!r} registered by {registered.source} records metric {metric.name!r}, which "
                    "another check records with another definition: give it another name"
                )
        options = (*TEAM_CHECK_OPTIONS, *registered.options)
        checks[name] = Check(name, registered.run, registered.metrics, "sweep", options=options)
    return checks


def all_checks() -> dict[str, Check]:
    """Every check by name, in report order: the battery, a team's checks, the scaling and paired checks."""
    return {**BATTERY, **team_checks(), **SCALING_CHECKS, **PAIRED_CHECKS}


def battery_names() -> tuple[str, ...]:
    """The default set: the battery's checks, then a team's checks registered to run with it."""
    extensions.load_extensions()
    return (*BATTERY, *(name for name, registered in extensions.CHECKS.items() if registered.in_battery))


def sweep_check_names() -> tuple[str, ...]:
    """Every check that reads one sweep and has a baseline: the battery's and a team's."""
    return (*BATTERY, *team_checks())


def check(name: str) -> Check:
    """The check ``name`` (built in or a team's); a clear error naming the known ones when there is none."""
    checks = all_checks()
    if name not in checks:
        raise TrainstabError(f"unknown trainstab check {name!r}; known: {', '.join(checks)}")
    return checks[name]


def report_order(name: str) -> int:
    """Where the check ``name`` sits in reports: the battery's order, a team's checks, then the scaling checks'."""
    return list(all_checks()).index(name)
