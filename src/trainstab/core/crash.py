"""A model's crash as one line: its exception, the user's file and line, the LR and the step.

Training runs the user's code (the factory's model, an optimizer factory) deep inside trainstab and torch,
often in a worker process; its traceback there is a hundred lines, most of them ours. :func:`crash_of` keeps
the whole traceback (for ``--traceback``) and finds what the one line says:

1. the user's frame: the deepest one outside trainstab, torch and the standard library: where the user's
   code raised, or where it called torch with what torch refused;
2. the LR: a stack of M learning rates runs each member's forward in turn (``FunctionalStack.forward``'s
   loop index ``k``, mapped through ``train_members``' list of members still training); a crash outside a
   member's forward (the backward of the members' summed loss, an optimizer step) names every LR of the stack;
3. the step: counted by the caller, as the steps completed before the crash.

Reading two local names of frames in :mod:`trainstab.train.models` and :mod:`trainstab.train.engine` couples this
module to them; when they are not found the line names the stack's LRs instead, never a wrong one.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType

from trainstab.core.errors import Crash, ModelCrashed

_TRAINSTAB = str(Path(__file__).resolve().parents[1])  # the trainstab package, every subpackage in it


def _excluded_folders() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The folders that are not the user's code: (trainstab's and torch's when loaded, the standard library's)."""
    packages = [_TRAINSTAB]
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "__file__", None):
        packages.append(str(Path(str(torch.__file__)).resolve().parent))
    stdlib = {str(Path(sysconfig.get_paths()[key]).resolve()) for key in ("stdlib", "platstdlib")}
    return tuple(packages), tuple(stdlib)


def _is_users(filename: str, packages: tuple[str, ...], stdlib: tuple[str, ...]) -> bool:
    """Whether a frame's file is the user's: not trainstab's, torch's or the standard library's (site-packages
    counts as the user's, also where a distribution keeps it inside the standard library's folder)."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    path = str(Path(filename).resolve())
    if any(path.startswith(folder + os.sep) for folder in packages):
        return False
    installed = "site-packages" in path or "dist-packages" in path
    return installed or not any(path.startswith(folder + os.sep) for folder in stdlib)


def shown_path(filename: str) -> str:
    """A file as the line shows it: relative to the working folder when inside it."""
    try:
        return os.path.relpath(filename) if Path(filename).resolve().is_relative_to(Path.cwd()) else filename
    except (OSError, ValueError):  # another drive (Windows), or a deleted working folder
        return filename


def user_location(tb: TracebackType | None) -> str:
    """``path:line in function`` of the deepest frame of the user's code in ``tb`` (the deepest frame when none
    is the user's: then trainstab or torch itself raised); "" for no traceback."""
    frames = list(traceback.walk_tb(tb))
    if not frames:
        return ""
    packages, stdlib = _excluded_folders()
    users = [(frame, line) for frame, line in frames if _is_users(frame.f_code.co_filename, packages, stdlib)]
    frame, line = (users or frames)[-1]
    return f"{shown_path(frame.f_code.co_filename)}:{line} in {frame.f_code.co_name}"


def exception_name(error: BaseException) -> str:
    """``RuntimeError``; outside the builtins with its module: ``torch.OutOfMemoryError``, ``mypkg.MyError``."""
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def first_line(error: BaseException) -> str:
    """The first non-empty line of the exception's message, verbatim (torch's run to a dozen lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return ""
    more = f" [... {len(lines) - 1} more line(s)]" if len(lines) > 1 else ""
    return lines[0] + more


def _member_lr(tb: TracebackType | None, lrs: Sequence[float]) -> float | None:
    """The LR of the stack member whose forward raised, or None when the crash was not in one member's forward."""
    member: int | None = None
    live: list[int] | None = None
    for frame, _ in traceback.walk_tb(tb):
        name = frame.f_code.co_name
        members = _local(frame, "live")
        if name == "train_members" and isinstance(members, list):
            live = members
        elif name == "forward" and type(_local(frame, "self")).__name__ == "FunctionalStack":
            k = _local(frame, "k")
            member = k if isinstance(k, int) else None
    if member is None:
        return None
    slots = live if live is not None else list(range(len(lrs)))
    if member >= len(slots) or slots[member] >= len(lrs):
        return None
    return lrs[slots[member]]


def _local(frame: FrameType, name: str) -> object:
    """A local variable of a frame of the traceback, or None."""
    return frame.f_locals.get(name)


def describe_when(lrs: Sequence[float], lr: float | None, step: int | None, steps: int, during: str = "") -> str:
    """Where in the run: ``at step 40 of 60 (lr=0.01)``, or in the evaluation after the last step."""
    shown = f"lr={lr:g}" if lr is not None else f"lrs {','.join(f'{x:g}' for x in lrs)}, one stacked model"
    if step is None:
        where = f"while training {shown}"
    elif step >= steps:
        where = f"in the evaluation after the last step (step {steps - 1}, {shown})"
    else:
        where = f"at step {step} of {steps} ({shown})"
    return f"{where} {during}".rstrip()


def crash_of(
    error: BaseException, model: str, lrs: Sequence[float], step: int | None, steps: int, during: str = ""
) -> ModelCrashed:
    """The :class:`ModelCrashed` for ``error``, raised by ``model`` while training the stack ``lrs``.

    ``step``: the steps completed before it (``steps``: all of them, so the crash was in the evaluation);
    ``during``: what else to say, e.g. "in the coordinate check at width 64".
    """
    tb = error.__traceback__
    crash = Crash(
        model=model,
        error=exception_name(error),
        message=first_line(error),
        location=user_location(tb),
        when=describe_when(lrs, _member_lr(tb, lrs), step, steps, during),
        traceback="".join(traceback.format_exception(error)),
    )
    return ModelCrashed(crash)
