"""Every optimizer trainstab can train with, by name: built in, registered by a team, or ``package.module:callable``.

The one table the valid names, the help text, the errors and the epsilon-free set (``grad_rms_vs_eps`` does not
call a small gradient a stall under an optimizer without an epsilon) derive from. The builders live in the
training layer (``trainstab.train.optimizers`` for the built-in ones; a team's are its own functions); this module
holds no torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainstab.core.environment import installed_torch
from trainstab.core.errors import TrainstabError
from trainstab.core.extensions import caller, load_extensions, record, valid_name

#: An optimizer named by import path: ``callable(param_groups, peak_lr) -> torch.optim.Optimizer``.
IMPORT_PATH = re.compile(r"[\w.]+:[\w.]+")


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer by name: what it is (help text), whether its update has an epsilon, and who builds it."""

    name: str
    description: str
    has_epsilon: bool  # Adam-like updates divide by sqrt(v) + eps; sign and momentum steps have none
    build: Callable[..., Any] | None = None  # (param_groups, peak_lr) -> torch.optim.Optimizer; None: built in
    source: str = "trainstab"
    needs_torch: tuple[int, int] | None = None  # the first torch release that has it (torch >= 2.5 has the rest)


#: The optimizers trainstab builds itself (trainstab.train.optim for AdamW, trainstab.train.optimizers for the rest).
BUILT_IN: dict[str, OptimizerEntry] = {
    entry.name: entry
    for entry in (
        OptimizerEntry("adamw", "AdamW over the stacked members (the paper's numbers)", has_epsilon=True),
        OptimizerEntry("muon", "Muon on hidden matrices, AdamW on the rest", has_epsilon=True, needs_torch=(2, 9)),
        OptimizerEntry("adafactor", "torch.optim.Adafactor", has_epsilon=True),
        OptimizerEntry("lion", "Lion (sign of interpolated momentum)", has_epsilon=False),
        OptimizerEntry("sgd", "SGD with momentum beta1", has_epsilon=False),
    )
}
_registered: dict[str, OptimizerEntry] = {}


def register_optimizer(
    name: str, build: Callable[..., Any], *, description: str = "", has_epsilon: bool = True
) -> None:
    """Record a team's optimizer: ``build(param_groups, peak_lr)`` returns a ``torch.optim.Optimizer``."""
    valid_name("optimizer", name)
    if name in BUILT_IN:
        raise TrainstabError(f"optimizer {name!r} is built in: register yours under another name")
    if not callable(build):
        raise TrainstabError(f"optimizer {name!r}: build must be a function (param_groups, peak_lr) -> Optimizer")
    entry = OptimizerEntry(name, description or name, has_epsilon, build, caller(build))
    record(_registered, "optimizer", entry, "build")


def optimizers() -> dict[str, OptimizerEntry]:
    """Every optimizer by name: the built-in ones, then those registered by a team's modules."""
    load_extensions()
    return {**BUILT_IN, **_registered}


def is_optimizer(name: str) -> bool:
    """Whether ``name`` names an optimizer: a known one or ``package.module:callable``."""
    return name in optimizers() or bool(IMPORT_PATH.fullmatch(name))


def has_epsilon(name: str) -> bool:
    """Whether the optimizer ``name`` has an epsilon its updates shrink toward (an import path: assumed so)."""
    entry = optimizers().get(name)
    return entry.has_epsilon if entry is not None else True


def choices() -> str:
    """The valid optimizer names for an error or a help text."""
    return f"one of {', '.join(optimizers())} or package.module:callable"


def newer_torch_needed(name: str) -> str | None:
    """Why the optimizer ``name`` cannot run on the installed torch, in one line (None: it can).

    Read from the installed torch's version (no torch import), so a run is refused before anything trains.
    """
    entry = optimizers().get(name)
    if entry is None or entry.needs_torch is None:
        return None
    found = re.match(r"(\d+)\.(\d+)", installed_torch())
    if found is None or (int(found[1]), int(found[2])) >= entry.needs_torch:
        return None
    needed = ".".join(map(str, entry.needs_torch))
    others = ", ".join(other for other, row in BUILT_IN.items() if row.needs_torch is None)
    return (
        f"optimizer {name!r} needs torch >= {needed}, and this environment has torch {installed_torch()}: "
        f"upgrade torch (pip install 'torch>={needed}'), or choose one of {others}"
    )
