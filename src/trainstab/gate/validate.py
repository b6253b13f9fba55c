"""Check a folder of baselines without training: every file read as a run would read it, one line per problem.

What ``trainstab baselines validate`` runs (usable as a pre-commit hook). A baseline is
``<folder>/<model label>/<check>.json``; each is read by :func:`trainstab.gate.baseline.read_baseline`, the reader
a run gates with, so a file this accepts is one a run can use, and one it refuses would stop that run's test.
What the reader checks is the published JSON Schema (:mod:`trainstab.gate.schemas`) and what a schema cannot
say: each per-LR metric has exactly the protocol's LRs, every number is finite, no key appears twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainstab.checks.registry import sweep_check_names
from trainstab.core.files import shown
from trainstab.gate.baseline import BaselineError, file_name, read_baseline


@dataclass(frozen=True)
class Problem:
    """One file a run could not use, and why."""

    path: Path
    problem: str

    def line(self) -> str:
        """The problem in one line, naming the file as the user would type it."""
        return f"{shown(self.path)}: {self.problem}"


def baseline_files(folder: Path) -> list[Path]:
    """Every file of ``folder`` a run would read as a baseline, sorted: ``*.json`` below it (through linked
    folders, as a run reads them; each real folder once), except the ``*.obtained.json`` a mismatching run writes
    beside a baseline (never committed)."""
    found, seen = [], set()
    for where, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(where)
        if real in seen:  # a link back up the tree: walked once
            folders.clear()
            continue
        seen.add(real)
        found += [Path(where) / name for name in files if name.endswith(".json")]
    return sorted(path for path in found if not path.name.endswith(".obtained.json"))


def validate_folder(folder: Path) -> tuple[int, list[Problem]]:
    """The number of baseline files in ``folder`` and the problems of those a run could not use.

    A file must sit in a model's folder (``<folder>/<model label>/<check>.json``), be named after a check that
    records a baseline (the battery's, or a team's registered one) and read as that check's baseline.
    """
    files = baseline_files(folder)
    checks = set(sweep_check_names())
    problems = []
    for path in files:
        if path.parent.parent != folder:
            problems.append(Problem(path, "not where a baseline lives: <folder>/<model label>/<check>.json"))
            continue
        if path.stem not in checks:
            known = ", ".join(sorted(checks))
            problems.append(Problem(path, f"no check named {path.stem!r} records a baseline (known: {known})"))
            continue
        try:
            baseline = read_baseline(path, path.stem)
        except BaselineError as error:
            problems.append(Problem(path, error.problem))
            continue
        if baseline is None:  # a link to nothing: a run would find no baseline there and record a new one
            problems.append(Problem(path, "is a broken link: a run would see no baseline here"))
            continue
        if file_name(baseline.data["model"]) != path.parent.name:
            where = file_name(baseline.data["model"])
            problems.append(Problem(path, f'"model" is {baseline.data["model"]!r}, whose baselines live in {where}/'))
    return len(files), problems
