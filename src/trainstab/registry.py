"""Every check trainstab runs, in report order: the battery, the scaling checks, then the paired checks.

The one list the rest derives from: the names ``parametrize_with_checks``
accepts, the order of every report, and which checks have baselines.
"""

from __future__ import annotations

from trainstab.checks import BATTERY, Check
from trainstab.scaling import MUP_CHECKS, PAIRED_CHECKS, SCALING_CHECKS, STABILITY_FORECASTS

#: Every check by name, in report order.
CHECKS: dict[str, Check] = {**BATTERY, **SCALING_CHECKS, **PAIRED_CHECKS}
#: The battery's checks: one sweep of one model each, held to bounds and baselines (the default set).
CHECK_NAMES = tuple(BATTERY)
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


def report_order(name: str) -> int:
    """Where the check ``name`` sits in reports: the battery's order, then the scaling checks'."""
    return list(CHECKS).index(name)
