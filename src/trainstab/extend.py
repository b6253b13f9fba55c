"""A team's own checks and optimizers, run by trainstab like its built-in ones.

Write them in a module of your package and name it in your ``pyproject.toml`` (``pip install -e .`` once), the
way pytest finds plugins::

    [project.entry-points.trainstab]
    myteam = "myteam.stability"

The module calls :func:`register_check` (a function of the sweep and the battery's bounds that returns a
:class:`CheckResult`, and the :class:`Metric` s its baseline records) and :func:`register_optimizer`
(``build(param_groups, peak_lr) -> torch.optim.Optimizer``); docs/extending.md has a whole module.

A registered check runs with the battery (``in_battery=False``: only when named in ``checks=`` or ``--checks``)
in ``parametrize_with_checks``, ``trainstab check``, the baselines (its metrics, with their tolerances), the
report, JUnit properties and the terminal summary; ``--trainstab-report-only <name>`` makes it report-only. A
registered optimizer is a value of ``--trainstab-optimizer`` / ``--set optimizer=`` and trains in every worker
process, because each imports the entry-point modules itself. docs/extending.md has the whole walk-through.
"""

from __future__ import annotations

from trainstab.checks.battery import CheckResult, Thresholds
from trainstab.core.extensions import register_check
from trainstab.core.optimizer_table import register_optimizer
from trainstab.core.results import Metric, RunResult, SweepResult, Tolerance

__all__ = [
    "CheckResult",
    "Metric",
    "RunResult",
    "SweepResult",
    "Thresholds",
    "Tolerance",
    "register_check",
    "register_optimizer",
]
