"""Progress of a long command: a bar on a terminal, and one plain line per finished unit everywhere.

A transient bar leaves nothing in a CI log, which then shows no line for minutes. So every finished unit
of work (a stack of learning rates, a fuzzed point, a finding) also prints one plain line, which a log keeps
and a terminal shows above the bar; ``--no-progress`` turns both off. A step that has not finished for
``--slow-step-seconds`` is said either way (:meth:`Reporter.alert`).
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn

from trainstab.core.config import SweepConfig


class Reporter:
    """A command's progress: ``update`` moves the bar (a terminal only), ``line`` prints a finished unit."""

    def __init__(self, console: Console, enabled: bool, what: str, unit: str = "") -> None:
        self.console = console
        self.enabled = enabled
        columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        if unit:
            columns.append(TextColumn(unit))
        columns.append(TimeElapsedColumn())
        # rich draws nothing on a console that is not a terminal: there, the lines are the progress.
        self.bar = Progress(*columns, console=console, transient=True, disable=not (enabled and console.is_terminal))
        self.task = self.bar.add_task(what, total=None)

    def __enter__(self) -> Reporter:
        self.bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.stop()

    def update(self, done: int, total: int | None, description: str | None = None) -> None:
        """Move the bar."""
        if description is None:
            self.bar.update(self.task, completed=done, total=total)
        else:
            self.bar.update(self.task, completed=done, total=total, description=description)

    def line(self, text: str) -> None:
        """One finished unit, as plain text (no markup, no highlighting: a log shows it as written)."""
        if self.enabled:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def alert(self, text: str) -> None:
        """A line printed with progress on or off: training that went quiet (:class:`trainstab.train.sweep._Watch`).

        ``--no-progress`` asks for no running commentary, not for silence while a step takes minutes.
        """
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def stack_done(self, done: int, total: int, config: SweepConfig, lrs: list[float], seconds: float) -> None:
        """A stack of a sweep finished (:data:`trainstab.train.sweep.StackDone`)."""
        m = config.model
        self.line(
            f"  stack {done}/{total} trained: lrs {','.join(f'{lr:g}' for lr in lrs)} at width {m.width}, "
            f"depth {m.depth} ({seconds:.1f} s)"
        )
