"""A team's own checks and optimizers: what it registered, and loading its modules from the ``trainstab`` group.

A team that measures something trainstab does not (its own stability metric, its own optimizer) registers it
from a module of its own package, named in its ``pyproject.toml`` as an entry point of the ``trainstab`` group,
the way pytest finds plugins (``pytest11``)::

    [project.entry-points.trainstab]
    myteam = "myteam.stability"

Every process that needs the registry (the CLI, pytest and its xdist workers, the sweep's worker processes,
Ray workers) imports those modules once, the first time a check or an optimizer is looked up, so a registered
optimizer trains in a worker exactly as in the process that asked for it. The modules call
:func:`trainstab.extend.register_check` and :func:`trainstab.extend.register_optimizer` (this module's record
of them); nothing else is read from them.

No torch here: the registry of checks (``trainstab.checks.registry``) and of optimizers
(``trainstab.core.optimizer_table``) read these records.
"""

from __future__ import annotations

import importlib.metadata
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainstab.core.errors import TrainstabError

#: The entry-point group a team's package names its trainstab modules in.
GROUP = "trainstab"
#: A check's or an optimizer's name: it becomes a test id, a baseline file name and a flag value.
NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class RegisteredCheck:
    """A team's check as registered: ``run(sweep, thresholds) -> CheckResult`` and the metrics it records."""

    name: str
    run: Callable[..., Any]
    metrics: tuple[Any, ...]  # trainstab.core.results.Metric; checked by trainstab.checks.registry
    in_battery: bool  # runs by default with the battery (else only when asked for by name)
    source: str  # the module that registered it, for messages
    options: tuple[
        str, ...
    ] = ()  # options its function reads beyond max-lr and ignore-params ("attention-logit-bound")


#: A team's checks by name, in the order registered.
CHECKS: dict[str, RegisteredCheck] = {}
_lock = threading.RLock()  # held while the modules import: they register under it
_loaded = False
_loading = False
_failure: TrainstabError | None = None


def valid_name(kind: str, name: str) -> str:
    """``name`` if it can name a check or an optimizer (lower case, digits, underscores); else a clear error."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise TrainstabError(
            f"{kind} name {name!r} is not allowed: use lower-case letters, digits and underscores, starting with a "
            "letter (it becomes a test id, a baseline file name and a --checks value)"
        )
    return name


def register_check(
    name: str,
    run: Callable[..., Any],
    *,
    metrics: tuple[Any, ...] = (),
    in_battery: bool = True,
    options: tuple[str, ...] = (),
) -> None:
    """Record a team's check; :mod:`trainstab.checks.registry` turns it into a check like the battery's."""
    valid_name("check", name)
    if not callable(run):
        raise TrainstabError(f"check {name!r}: run must be a function (sweep, thresholds) -> CheckResult")
    record(CHECKS, "check", RegisteredCheck(name, run, tuple(metrics), in_battery, caller(run), tuple(options)), "run")


def record(table: dict[str, Any], kind: str, entry: Any, function: str) -> None:
    """Put a team's ``entry`` (a registered check or optimizer, with its ``name`` and ``source``) in ``table``,
    refusing a second registration of its name with another function (the entry's attribute ``function``)."""
    with _lock:
        held = table.get(entry.name)
        if held is not None and getattr(held, function) is not getattr(entry, function):
            raise TrainstabError(
                f"{kind} {entry.name!r} is registered twice (by {held.source} and by {entry.source}): give one of "
                "them another name"
            )
        table[entry.name] = entry


def caller(function: Callable[..., Any]) -> str:
    """The module a registered function comes from, for messages."""
    return str(getattr(function, "__module__", None) or "an unknown module")


def load_extensions() -> None:
    """Import every module of the ``trainstab`` entry-point group, once per process.

    Another thread that looks something up meanwhile waits until the modules are imported (a lock held across
    the imports; re-entrant, so a module that registers, or looks something up while it registers, goes on). A
    module that fails to import, skips itself or is interrupted is refused in one line naming the entry point and
    the package it comes from, at this and every later look-up: a team's check that silently went missing would
    let its gate pass.
    """
    global _loaded, _loading, _failure
    with _lock:
        if _failure is not None:
            raise _failure
        if _loaded or _loading:  # _loading: this thread, inside a module that is registering
            return
        _loading = True
        try:
            for entry in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: e.name):
                try:
                    entry.load()
                except BaseException as error:  # a pytest.skip at import or a SystemExit too: never half a registry
                    where = f" (package {entry.dist.name})" if entry.dist is not None else ""
                    _failure = TrainstabError(
                        f"trainstab extension {entry.name!r} = {entry.value!r}{where} failed to import: "
                        f"{type(error).__name__}: {error}. Fix the module, or remove the entry point from the "
                        f"[project.entry-points.{GROUP}] table of that package and reinstall it"
                    )
                    if isinstance(error, KeyboardInterrupt):
                        raise
                    raise _failure from error
            _loaded = True
        finally:
            _loading = False
