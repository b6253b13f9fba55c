"""What can go wrong, one type per outcome, and the exit status each means.

Every front end reports each kind the same way: ``trainstab`` exits with its
code, and under pytest a bad input or a failed check fails the test while a
crash errors it (:mod:`trainstab.pytest_plugin.testing`). A crash is never a failed check:
CI must tell "the model is unstable" from "the model is broken".
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

#: Exit statuses of ``trainstab``: one meaning each, the same in every subcommand.
EXIT_PASSED = 0  # every check passed (or the command did its job)
EXIT_FAILED = 1  # a check failed: the model is unstable (or a file the run owed could not be written)
EXIT_BAD_INPUT = 2  # bad input, or a model that cannot be built or fails its first step (TrainstabError)
EXIT_CRASHED = 3  # the model crashed during training (ModelCrashed)
EXIT_INCONCLUSIVE = 4  # the run trained but cannot answer, e.g. a forecast that refuses to extrapolate
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT


class TrainstabError(Exception):
    """A problem with the user's input or set-up, reported without a traceback.

    The message is a single line naming the problem and the fix; the CLI prints
    it and exits with status 2 (4 for its subclass :class:`Inconclusive`).
    """


class Inconclusive(TrainstabError):
    """The run trained, but what it measured cannot answer the question (exit 4).

    A forecast whose sizes scatter around any trend refuses to extrapolate,
    and training stopped at its time limit measured too little:
    neither a pass nor a failure, and not bad input either.
    """


@dataclass(frozen=True)
class Crash:
    """Where and how a model crashed while training: what one line, and ``--traceback``, report."""

    model: str  # the model's name
    error: str  # the exception's type: RuntimeError, or mypkg.errors.MyError outside the builtins
    message: str  # the first line of its message, verbatim
    location: str  # "path:line in function": the deepest frame outside trainstab, torch and the stdlib
    when: str  # where in the run: "at step 40 of 60 (lr=0.01)"
    traceback: str  # the whole traceback, as the process that crashed formatted it

    def line(self) -> str:
        """The one line: model, when, the exception verbatim, and the user's file and line."""
        message = f"{self.error}: {self.message}" if self.message else self.error
        where = f" ({self.location})" if self.location else ""
        return f"model {self.model!r} crashed {self.when}: {message}{where}"


class ModelCrashed(Exception):
    """The model raised, or its worker process died, during training: exit 3, an error under pytest.

    Pickles with its :class:`Crash` (a worker process sends it to the parent whole).
    """

    def __init__(self, crash: Crash) -> None:
        super().__init__(crash)
        self.crash = crash

    def __str__(self) -> str:
        return self.crash.line()


class TrainstabWarning(pytest.PytestWarning):
    """What a run says without failing: a report-only check over its bound, baselines recorded in another
    environment, kernels that made a run not repeatable.

    A Python warning raised in the test that met it, so a suite can gate on it:
    ``-W error::trainstab.TrainstabWarning`` (or a ``filterwarnings`` line) turns each into a failure.
    """
