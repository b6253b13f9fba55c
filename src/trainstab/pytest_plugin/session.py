"""One pytest session's trainstab state: a dataclass on ``config.stash``, and the running test.

Everything a session accumulates (its options, its sweep cache folder, the
verdicts and curves the controller collects, the files it wrote) lives on
the session's own config, so a session run inside another (pytester,
in-process) never sees the outer one's. The test running now is a context
variable the plugin sets from each test's setup to its teardown, as Hypothesis
does for its current item; library code reads it through :func:`current_item`.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from trainstab.cache.session_cache import CacheUse, check_private
from trainstab.checks.scaling import Evidence
from trainstab.core.results import SweepResult
from trainstab.gate.against import BaseTrainer, Pair
from trainstab.gate.verdict import Verdict
from trainstab.run.options import RunOptions


@dataclass
class Session:
    """What one pytest session of trainstab holds, in the controller and in each xdist worker."""

    options: RunOptions
    folder: Path  # the sweep cache, shared by the controller and its workers (session_cache)
    previous_env: str | None  # the TRAINSTAB_SESSION value this session replaced (restored at the end)
    made_folder: bool  # this process made the folder, so it removes it
    is_worker: bool  # an xdist worker decides; the controller (or a run without xdist) writes
    verdicts: list[Verdict] = field(default_factory=list)  # every check's verdict (controller)
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)  # per model: its report figure (controller)
    written: list[str] = field(default_factory=list)  # one line per file written (controller)
    sent_curves: set[str] = field(default_factory=set)  # model labels whose curves this process already sent
    sweeps: dict[str, SweepResult] = field(default_factory=dict)  # this process's sweeps, by cache key
    evidence: dict[str, Evidence] = field(default_factory=dict)  # this process's ladders, by sweep and plan
    cache_events: list[CacheUse] = field(default_factory=list)  # this process's cache use, not yet reported
    cache_uses: list[CacheUse] = field(default_factory=list)  # the same, from every process (controller)
    base: BaseTrainer | None = None  # --trainstab-against: the base revision (each process checks out its own)
    pairs: dict[str, Pair] = field(default_factory=dict)  # this process's head/base pairs, by sweep
    workers_of: dict[str, set[str]] = field(default_factory=dict)  # xdist group -> workers its checks ran on

    def private_folder(self) -> Path:
        """The sweep cache folder, checked to be private to this user (an error otherwise)."""
        return check_private(self.folder)

    def first_curves_of(self, label: str) -> bool:
        """True the first time this process asks for ``label``: one copy of a model's curves is enough."""
        if label in self.sent_curves:
            return False
        self.sent_curves.add(label)
        return True


SESSION_KEY = pytest.StashKey[Session]()
#: What a check adds to the report of the test running it: its verdict row, files to write, curves.
PAYLOAD_KEY = pytest.StashKey[list[dict[str, Any]]]()
#: The test item running now: set by the plugin from the test's setup to its teardown.
CURRENT_ITEM: contextvars.ContextVar[pytest.Item | None] = contextvars.ContextVar("trainstab_item", default=None)
#: The token that restores CURRENT_ITEM at teardown (kept on the item).
CURRENT_TOKEN_KEY = pytest.StashKey[contextvars.Token[pytest.Item | None]]()


def session_of(config: pytest.Config) -> Session:
    """The trainstab session of a pytest run; an error naming the cause when the plugin is not active."""
    if SESSION_KEY not in config.stash:
        raise RuntimeError("trainstab checks run inside a pytest session with the trainstab plugin active")
    return config.stash[SESSION_KEY]


def current_item() -> pytest.Item | None:
    """The test item running now (its fixtures, its call), if any."""
    return CURRENT_ITEM.get()


def add_payload(item: pytest.Item, payload: dict[str, Any]) -> None:
    """Store what a check reports for this test (its row, files to write, curves); a test may run several."""
    item.stash.setdefault(PAYLOAD_KEY, []).append(payload)
