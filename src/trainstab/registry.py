"""Every check trainstab runs, in report order: the battery, the scaling checks, then the paired checks.

The one list the rest derives from: the names ``parametrize_with_checks``
accepts, the order of every report, and which checks have baselines.
"""

from __future__ import annotations

from trainstab.checks import BATTERY, Check
from trainstab.scaling import PAIRED_CHECKS, SCALING_CHECKS

#: Every check by name, in report order.
CHECKS: dict[str, Check] = {**BATTERY, **SCALING_CHECKS, **PAIRED_CHECKS}
#: The battery's checks: one sweep of one model each, held to bounds and baselines (the default set).
CHECK_NAMES = tuple(BATTERY)
#: The scaling checks: ladders of sizes, opt in with ``parametrize_with_checks(models, checks=SCALING_CHECK_NAMES)``.
SCALING_CHECK_NAMES = tuple(SCALING_CHECKS)
#: Checks that train a model twice, with and without a remedy (z_loss_effect); opt in by name.
PAIRED_CHECK_NAMES = tuple(PAIRED_CHECKS)


def report_order(name: str) -> int:
    """Where the check ``name`` sits in reports: the battery's order, then the scaling checks'."""
    return list(CHECKS).index(name)
