"""``trainstab compare`` and ``trainstab check --against``: the base revision's side of a check run.

What the command adds to ``trainstab check`` when a base is named: the base opened before anything trains (a
revision that does not exist, or a model that is the same code at both revisions, is refused in one line), the
header line naming it, the base's training, and the side-by-side table (:func:`compare_table`).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from trainstab.core.errors import TrainstabError
from trainstab.core.files import invocation_folder
from trainstab.gate.against import BaseTrainer, Pair
from trainstab.gate.verdict import Verdict
from trainstab.run.options import RunOptions


def open_base(options: RunOptions, model_name: str, asked: bool) -> BaseTrainer | None:
    """The run's base (None without ``--against``): resolved now, checked out when it first trains.

    ``asked``: the command line asked for the comparison (``trainstab compare``, ``--against``). Then a model
    that is the same code at both revisions (built into trainstab, or imported from outside the repository) is
    refused: comparing it would show a difference of zero and say nothing. A ``trainstab_against`` key of the
    configuration (shared with pytest) judges such a model by its bounds alone, as pytest does, and says so.
    """
    if options.against is None:
        return None
    trainer = BaseTrainer(invocation_folder(), options.against, options.cache, options.flag("against"))
    why = trainer.why_not_compared(model_name)
    if why and asked:
        raise TrainstabError(
            f"{why}, so there is nothing to compare with {trainer.name}; name your own factory "
            "(--model package.module:factory) from the repository"
        )
    return trainer


def header(pair: Pair) -> str:
    """The line that names the base (the revision as written, or how it was found, and its commit) and the seeds
    each side trains."""
    seeds = ",".join(str(config.train.seed) for config in pair.configs)
    return f"against: {pair.against}; seeds {seeds} on each side"


def train_base(pair: Pair, console: Console) -> None:
    """Train (or read) the base's sweeps, with a line before and the cache's part after."""
    console.print(f"training the base, {pair.against}, from a checkout: {len(pair.configs)} sweeps", soft_wrap=True)
    found = pair.base_sweeps
    if found.absent:
        console.print(f"not compared with {pair.against}: {found.absent}; judged by the absolute bounds alone")
        return
    if found.uses:
        read = sum(use.read for use in found.uses)
        console.print(f"base: {read} of {len(found.uses)} sweeps read from the cache", soft_wrap=True)


def compare_table(verdicts: list[Verdict]) -> Table:
    """Base and head side by side per check: the check's statistic at the LR where it is closest to (or beyond)
    its band, the mean of each side over the seeds, the paired difference and its band, and the call."""
    caption = "means over the seeds (* some runs diverged); attention logits and gradient RMS: Δ and band in log10"
    table = Table(title="head against base", caption=caption)
    for column, justify in (
        ("check", "left"),
        ("lr", "right"),
        ("base", "right"),
        ("head", "right"),
        ("Δ", "right"),
        ("band", "right"),
        ("call", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for verdict in verdicts:
        paired = verdict.paired
        if paired is None:
            continue
        worst = paired.worst
        cells = worst.cells(units=False) if worst is not None else ("-",) * 5
        style = "red" if paired.status == "worse" and verdict.result.asserted else None
        table.add_row(verdict.check, *cells, paired.status, style=style)
    return table
