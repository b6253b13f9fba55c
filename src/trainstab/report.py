"""Presenting a sweep: strict JSON for machines, a rich table for people."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table

from trainstab.config import STACK_SIZE, SweepConfig
from trainstab.corpus import bundled_corpus_path
from trainstab.errors import TrainstabError
from trainstab.files import cannot_write_in, write_text_atomically
from trainstab.sweep import SweepResult


def finite_or_none(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def resolved_config(config: SweepConfig) -> dict[str, Any]:
    """The config as data, with every default that depends on others filled in."""
    data = dataclasses.asdict(config)
    data["train"]["weight_decay"] = config.train.resolved_weight_decay
    data["train"]["warmup_steps"] = config.train.warmup_steps
    data["corpus"] = str(config.corpus) if config.corpus is not None else str(bundled_corpus_path())
    data["stack_size"] = STACK_SIZE
    return data


def sweep_to_dict(result: SweepResult) -> dict[str, Any]:
    """Everything about a sweep as plain JSON-ready data (NaN becomes null)."""
    return {
        "runs": finite_or_none([dataclasses.asdict(run) for run in result.runs]),
        "lr_sensitivity": finite_or_none(result.lr_sensitivity),
        "best_lr": result.best_lr,
        "config": finite_or_none(resolved_config(result.config)),
        "environment": result.environment,
        "elapsed_seconds": result.elapsed_seconds,
    }


def check_writable(path: Path, flag: str = "--json") -> None:
    """Fail before any training if ``path`` cannot be written.

    Tries it for real (a temporary file beside it, and opening an existing file
    for append without changing it): permission bits say nothing when running
    as root, as CI often does.
    """
    if path.is_dir():
        raise TrainstabError(f"{flag} {path} is a directory; give a file name such as {path / 'sweep.json'}")
    parent = path.parent
    if not parent.is_dir():
        raise TrainstabError(f"{flag} {path}: directory {parent} does not exist; create it first")
    problem = cannot_write_in(parent)
    if problem is None and path.exists():
        try:
            with path.open("a"):  # opened for append, never changed
                pass
        except OSError as error:
            problem = str(error.strerror or error)
    if problem:
        raise TrainstabError(f"{flag} {path} is not writable ({problem}); choose a path you can write to")


def write_json(path: Path, data: dict[str, Any]) -> Path | None:
    """Write ``data`` to ``path`` atomically; an existing file is kept as ``<path>.previous`` (returned)."""
    check_writable(path)
    try:
        return write_text_atomically(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    except OSError as error:
        raise TrainstabError(f"could not write {path} ({error.strerror}); choose a path you can write to") from None


def _number(value: float, digits: int = 4) -> str:
    """A compact number for a table cell ("-" for NaN)."""
    if not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}" if abs(value) >= 1e4 else f"{value:.{digits}f}"


def sweep_table(result: SweepResult) -> Table:
    """One row per learning rate: losses, max attention logit, log Z, divergence."""
    table = Table(title="trainstab sweep", caption=_caption(result))
    for column in ("LR", "final loss", "eval loss", "max attn logit", "log Z", "diverged"):
        table.add_column(column, justify="right")
    for run in result.runs:
        diverged = f"yes (step {run.diverged_at_step})" if run.diverged else "no"
        table.add_row(
            f"{run.lr:g}",
            _number(run.final_loss),
            _number(run.eval_loss),
            f"{run.max_attention_logit:.3g}",
            _number(run.log_z_mean, 3),
            diverged,
            style="red" if run.diverged or run.max_attention_logit > 1e4 else None,
        )
    return table


def _caption(result: SweepResult) -> str:
    """The sweep's summary line under the table."""
    return (
        f"LR sensitivity {result.lr_sensitivity:.4f} · best LR {result.best_lr:g} · "
        f"l0 {result.runs[0].initial_loss:.4f} · seed {result.config.train.seed} · {result.elapsed_seconds:.1f} s"
    )
