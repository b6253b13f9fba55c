"""Writing the files users keep (reports, maps): atomically, never losing an earlier one.

Imports nothing heavy, so the pytest plugin can use it at session end.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


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
        with os.fdopen(handle, "wb" if isinstance(data, bytes) else "w") as out:
            out.write(data)
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
    from trainstab.errors import TrainstabError

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


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter messages, copy-pasteable)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
