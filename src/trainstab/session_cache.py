"""The session's sweep cache: one folder per pytest session, private to its user, holding no code.

Every xdist worker of a session reads the sweeps the others trained from here, so each model trains
once. What is stored is numbers, as JSON: nothing in the folder can execute code when read, and a
file another local user planted is refused before it is read (it must be ours, not a link). The
folder is a fresh ``trainstab-session-*`` folder made by :func:`tempfile.mkdtemp` (mode 0700, a name
nobody can predict), so there is no shared, fixed path to pre-create or link, and nothing is written
into the user's repository (not even ``.pytest_cache``) by a session that never trains.

The controller makes it and hands the path to its workers through ``TRAINSTAB_SESSION``; it removes
it at the end, and removes its own stale session folders (older than a day, left by killed runs).
Each file is written to a temporary name and renamed, so a worker killed mid-write leaves no half file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from trainstab.config import SweepConfig
from trainstab.errors import TrainstabError
from trainstab.results import RunResult, SweepResult

PREFIX = "trainstab-session-"
STALE_SECONDS = 24 * 3600  # a session folder this old belongs to a run that was killed


def make_session_folder(cache_root: Path | None = None) -> Path:
    """A new private folder for this session's sweeps: under ``cache_root`` when given and writable, else in
    the temporary folder.

    Stale session folders of ours beside it are removed first.
    """
    for parent in ([cache_root] if cache_root is not None else []) + [Path(tempfile.gettempdir())]:
        try:
            parent.mkdir(parents=True, exist_ok=True)
            remove_stale(parent)
            folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        except OSError:
            continue  # a read-only checkout: fall back to the private temporary folder
        try:
            return check_private(folder)
        except TrainstabError:  # a filesystem without modes (a Windows or FAT mount): not private, try the next
            shutil.rmtree(folder, ignore_errors=True)
    raise TrainstabError(
        f"cannot create a private cache folder in {tempfile.gettempdir()}; set TMPDIR to a writable folder"
    )


def remove_stale(parent: Path, now: float | None = None) -> None:
    """Remove our own session folders in ``parent`` older than :data:`STALE_SECONDS` (others' are left alone)."""
    now = time.time() if now is None else now
    for folder in parent.glob(PREFIX + "*"):
        try:
            info = folder.lstat()
        except OSError:
            continue
        mine = info.st_uid == os.getuid() and stat.S_ISDIR(info.st_mode)
        if mine and now - info.st_mtime > STALE_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)


def check_private(folder: Path) -> Path:
    """``folder`` if it is a real folder owned by this user and closed to others; else a clear error."""
    try:
        info = folder.lstat()
    except OSError as error:
        raise TrainstabError(f"the session cache folder {folder} is gone ({error.strerror})") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise TrainstabError(
            f"the session cache folder {folder} is not a private folder of this user (a link, another owner, or "
            "open to others); refusing to read or write it"
        )
    return folder


def write_sweep(path: Path, result: SweepResult) -> None:
    """Store a sweep's numbers (not its config, which is the cache key) as JSON, atomically."""
    data = {field.name: getattr(result, field.name) for field in dataclasses.fields(result) if field.name != "config"}
    data["runs"] = [dataclasses.asdict(run) for run in result.runs]
    text = json.dumps(data, allow_nan=True)  # NaN and inf kept exactly (a private file, read only by us)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_sweep(path: Path, config: SweepConfig) -> SweepResult | None:
    """The sweep stored at ``path`` for ``config``; None when there is none, or it cannot be used."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            return None  # not a file we wrote: train instead of reading it
        data: dict[str, Any] = json.loads(path.read_text())
        runs = tuple(
            RunResult(**{**run, "losses": tuple(run["losses"]), "history": tuple(run["history"])})
            for run in data.pop("runs")
        )
        return SweepResult(config=config, runs=runs, **data)
    except (OSError, ValueError, TypeError, KeyError):
        return None  # missing, cut short or from another version: the caller trains it again
