"""Writing the files users keep (reports, maps, JSON): atomically, never losing an earlier one.

Also what every writer shares: strict JSON (NaN and infinities as null) and
the checks, before any training, that a file or folder can be written.
Imports nothing heavy, so the pytest plugin can use it at session end.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trainstab.core.errors import TrainstabError
from trainstab.core.option_fields import PYTEST_FLAGS


def keep_previous(path: Path) -> Path | None:
    """Move an existing file at ``path`` aside, never over another kept one; returns where it went.

    Generations are numbered: ``<path>.previous``, then ``<path>.previous.2``, ``.previous.3``, ... A file
    the user already has is never silently lost to a rerun, however many reruns there are.
    """
    if not path.exists():
        return None
    previous = path.with_name(path.name + ".previous")
    generation = 1
    while previous.exists() or previous.is_symlink():
        generation += 1
        previous = path.with_name(f"{path.name}.previous.{generation}")
    os.rename(path, previous)
    return previous


def _new_file_mode(path: Path) -> int:
    """The mode a rewrite of ``path`` keeps: the old file's, or what the umask gives a new file."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomically(path: Path, data: str | bytes, keep: bool = True) -> Path | None:
    """Write ``data`` to ``path`` through a temporary file, so a crash never leaves half a file.

    With ``keep``, an existing file is kept (:func:`keep_previous`, returned); without, it is replaced (for
    files under version control). The file keeps its mode (a new one gets the umask's). The temporary file
    is removed on every failure. Raises OSError.
    """
    mode = _new_file_mode(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    previous = None
    try:
        # Text as UTF-8 whatever the locale: a report's "·" must not fail under LANG=C on an old system.
        with os.fdopen(handle, "wb") as out:
            out.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        os.chmod(temporary, mode)
        previous = keep_previous(path) if keep else None
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        if previous is not None and not path.exists():
            os.rename(previous, path)  # the old file goes back where it was
        raise
    return previous


def write_text_atomically(path: Path, text: str) -> Path | None:
    """:func:`write_atomically` for text, keeping an existing file as ``<path>.previous``."""
    return write_atomically(path, text)


#: The start of a summary line for a file that could not be written: the run must not report success.
WRITE_FAILED = "could NOT write"


def check_folder_writable(folder: Path, what: str) -> None:
    """Fail before any training when files cannot be written in ``folder`` (created later if missing).

    ``what`` names the option, e.g. ``--trainstab-report``. Tries for real (a temporary file in the
    folder, or in its nearest existing parent): permission bits say nothing when running as root.
    """
    try:
        if folder.exists() and not folder.is_dir():
            raise TrainstabError(f"{what} {folder} is a file; give a folder (it is created if missing)")
        existing = folder
        while not existing.exists():
            existing = existing.parent
    except OSError as error:  # a parent this user cannot read
        raise TrainstabError(f"{what} {folder} cannot be reached ({error.strerror or error})") from None
    if not existing.is_dir():
        raise TrainstabError(f"{what} {folder}: {existing} is a file, so the folder cannot be created")
    problem = cannot_write_in(existing)
    if problem:
        raise TrainstabError(f"{what} {folder} cannot be written ({problem}); choose a folder you can write to")


def cannot_write_in(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (None when one can): tried for real, since root ignores mode bits."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return str(error.strerror or error)
    return None


#: The folder the run started in (:func:`set_invocation_folder`); None: the working folder of the moment.
_invocation_folder: Path | None = None


def invocation_folder() -> Path:
    """The folder the user's relative paths mean: the one ``trainstab`` started in, or the working folder
    outside a command (under pytest every path option is made absolute when the session starts instead).

    Not the working folder of the moment during a command: a model module may call ``os.chdir`` when imported.
    """
    return _invocation_folder if _invocation_folder is not None else Path.cwd()


def set_invocation_folder(folder: Path | None) -> Path | None:
    """Make ``folder`` the run's start folder (None: none, the working folder of the moment); returns the one it
    replaced, for the caller to put back when its run ends (a run inside another one: pytester, tests)."""
    global _invocation_folder
    previous, _invocation_folder = _invocation_folder, folder.absolute() if folder is not None else None
    return previous


def absolute(path: str | Path, base: Path | None = None) -> Path:
    """``path`` as an absolute path: a relative one is relative to ``base`` (default: the invocation folder).

    Made before any model's code runs, so what trainstab writes and reads never depends on the working folder.
    """
    return (base if base is not None else invocation_folder()) / path


def shown(path: Path) -> str:
    """``path`` relative to the invocation folder when it lies below it (shorter messages, copy-pasteable)."""
    folder = invocation_folder()
    try:
        return str((folder / path).resolve().relative_to(folder.resolve()))
    except (ValueError, OSError):
        return str(path)


def finite_or_none(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def json_text(data: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``data`` as strict, human-diffable JSON (indented, one trailing newline); NaN or inf raise ValueError.

    ``default`` turns what JSON has no type for into something it has (``str``), as :func:`json.dumps` does.
    """
    return json.dumps(data, indent=2, allow_nan=False, default=default) + "\n"


def check_writable(path: Path, flag: str = "--json") -> None:
    """Fail before any training if the file ``path`` cannot be written; ``flag`` names the option that gave it.

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


def write_json(path: Path, data: Any) -> Path | None:
    """Write ``data`` to ``path`` as strict JSON, atomically; an existing file is kept (returned, see keep_previous)."""
    check_writable(path)
    try:
        return write_text_atomically(path, json_text(data))
    except OSError as error:
        raise TrainstabError(f"could not write {path} ({error.strerror}); choose a path you can write to") from None


@dataclass(frozen=True)
class FileWrite:
    """A file a run decided to write (on the pytest-xdist controller, or in the CLI's process)."""

    path: str
    text: str  # "" for "clear"
    reason: Literal["new", "updated", "regenerated", "obtained", "clear"]  # clear: remove a stale .obtained file


def write_files(writes: list[FileWrite] | tuple[FileWrite, ...], flags: str = PYTEST_FLAGS) -> list[str]:
    """Write (or clear) the files a run decided on, atomically; returns one line per file for the summary.

    A baseline is replaced in place (git keeps its history); the only file ever
    removed is a stale ``.obtained`` one. A file that cannot be written is
    reported in its line (starting :data:`WRITE_FAILED`), not raised: the run's verdicts still stand.
    ``flags`` spells the rewrite flags as the front end does.
    """
    done = []
    for write in writes:
        path = Path(write.path)
        try:
            if write.reason == "clear":
                path.unlink(missing_ok=True)
                done.append(f"removed {shown(path)} (stale: its baseline now passes or was rewritten)")
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, write.text, keep=False)
        except OSError as error:
            done.append(f"{WRITE_FAILED} {shown(path)} ({error.strerror or error}); check that folder")
            continue
        action = {
            "new": "new baseline, commit this file",
            "updated": f"baseline rewritten by {flags}update-baseline",
            "regenerated": f"baseline rewritten by {flags}regen-all",
            "obtained": "this run's metrics beside a failing baseline; not for committing",
        }[write.reason]
        done.append(f"wrote {shown(path)} ({action})")
    return done
