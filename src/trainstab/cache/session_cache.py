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

An entry is read as untrusted input (:mod:`trainstab.core.untrusted`), here and in the persistent cache
(:mod:`trainstab.cache.sweep_cache`, a folder CI restores): :func:`parse_sweep` takes it field by field, and only
an entry that is exactly this run's protocol (one run per LR of the grid, in its order, every field of its
type, the losses and probes its steps record) is used. Anything else is trained again and rewritten, and
the run says so (:class:`CacheUse`): a damaged entry is never judged.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainstab.core.config import SweepConfig
from trainstab.core.errors import TrainstabError
from trainstab.core.results import (
    ATTN_MAX_LOGIT,
    GRAD_NORM,
    GRAD_RMS,
    LOG_Z_MAX,
    LOG_Z_MEAN,
    LOG_Z_MIN,
    LOSS,
    MAX_ABS_OUTPUT_LOGIT,
    PARAM_RMS,
    STEP,
    UPDATE_RMS,
    RunResult,
    SweepResult,
)
from trainstab.core.untrusted import UntrustedFileError, read_json_file

PREFIX = "trainstab-session-"
STALE_SECONDS = 24 * 3600  # a session folder this old belongs to a run that was killed
#: The largest entry read or written. The default protocol's entry is about 300 KB; a 12-layer, 12-head model
#: probed every 10 of 2,000 steps at 8 LRs about 26 MB. A larger file is damage (or a device behind the name)
#: and is not read into memory; a sweep larger than this is not stored, since it could never be read back.
MAX_ENTRY_BYTES = 64 * 1024 * 1024
#: The keys of an entry (a SweepResult but its config, which is the entry's key) and of each of its runs.
_SWEEP_KEYS = frozenset(field.name for field in dataclasses.fields(SweepResult)) - {"config"}
_RUN_KEYS = frozenset(field.name for field in dataclasses.fields(RunResult))
#: The keys engine._record_probe writes at every probe of every model: the checks read them without a default.
_SNAPSHOT_KEYS = frozenset(
    {STEP, LOSS, ATTN_MAX_LOGIT, LOG_Z_MEAN, LOG_Z_MIN, LOG_Z_MAX, MAX_ABS_OUTPUT_LOGIT, GRAD_NORM}
    | {GRAD_RMS, UPDATE_RMS, PARAM_RMS}
)
#: A run's float fields: NaN and infinities are what they measured (a diverged run's final loss is NaN).
_RUN_NUMBERS = ("lr", "initial_loss", "final_loss", "eval_loss", "max_attention_logit", "log_z_mean")


@dataclass(frozen=True)
class CacheUse:
    """What a cache did for one sweep: read it, or trained it (kept or not), and why an entry there was not used."""

    entry: str  # the entry's file
    read: bool  # the sweep came from the entry: nothing trained
    stale: str = ""  # why the entry found there did not match this run (so it was retrained); "" when none was
    unstored: str = ""  # why the trained sweep could not be stored; "" when it was, or was read
    session: bool = False  # the session's private folder, not the persistent cache

    def stale_line(self) -> str:
        """The line saying an entry did not match this run, and what became of it."""
        done = f"retrained, but could not rewrite it ({self.unstored})" if self.unstored else "retrained and rewritten"
        cache = "session cache entry" if self.session else "cache entry"
        return f"{cache} {self.entry} did not match this run ({self.stale}); {done}"


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
    """Store a sweep's numbers (not its config, which is the cache key) as JSON, atomically.

    Raises OSError when it cannot be stored: the disk's error, or EFBIG for a sweep over :data:`MAX_ENTRY_BYTES`.
    """
    data = {field.name: getattr(result, field.name) for field in dataclasses.fields(result) if field.name != "config"}
    data["runs"] = [dataclasses.asdict(run) for run in result.runs]
    text = json.dumps(data, allow_nan=True)  # NaN and inf kept exactly (a private file, read only by us); ASCII
    if len(text) > MAX_ENTRY_BYTES:  # never read back: storing it would only cost the disk
        raise OSError(errno.EFBIG, f"the sweep is {len(text)} bytes, more than the {MAX_ENTRY_BYTES} an entry may be")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_sweep(path: Path, config: SweepConfig) -> SweepResult | None:
    """The sweep stored at ``path`` for ``config``; None when there is none, or it is not exactly ``config``'s."""
    return lookup_sweep(path, config)[0]


def lookup_sweep(path: Path, config: SweepConfig) -> tuple[SweepResult | None, str]:
    """The sweep stored at ``path`` for ``config`` (None when there is none or it cannot be used), and why an
    entry there was not used ("" when it was, or there was none): the caller retrains it and says so."""
    try:
        return load_sweep(path, config), ""
    except FileNotFoundError:
        return None, ""
    except UntrustedFileError as error:  # damaged, planted or another protocol's: never judged
        return None, str(error)


def load_sweep(path: Path, config: SweepConfig) -> SweepResult:
    """The sweep stored at ``path``, if it is exactly ``config``'s; FileNotFoundError when there is none.

    Raises :class:`~trainstab.core.untrusted.UntrustedFileError` saying why (without the path) for anything else: a
    link, another user's file, one over :data:`MAX_ENTRY_BYTES`, not JSON, or not this protocol's sweep
    (:func:`parse_sweep`).
    """
    try:
        data = read_json_file(path, MAX_ENTRY_BYTES, allow_nan=True, owner_only=True)
    except UntrustedFileError as error:  # its reason is a predicate ("is a link, ..."): give it its subject
        raise UntrustedFileError(f"the file {error}") from None
    return parse_sweep(data, config)


def parse_sweep(data: Any, config: SweepConfig) -> SweepResult:
    """The sweep in an entry's JSON value, if it is exactly ``config``'s; :class:`UntrustedFileError` if not.

    The one reader of the format :func:`write_sweep` writes: no key missing or extra, every field of its type,
    one run per LR of ``config.lrs`` in that order (compared exactly), each with the losses and probe snapshots
    its steps record, and the best LR one of the grid's.
    """
    entry = _object(data, _SWEEP_KEYS, "the entry")
    runs = entry["runs"]
    if not isinstance(runs, list):
        raise UntrustedFileError(f"its runs are {_kind(runs)}, not a list")
    stored = [run.get("lr") if isinstance(run, dict) else None for run in runs]
    if len(stored) != len(config.lrs) or any(not _same_lr(a, b) for a, b in zip(stored, config.lrs, strict=False)):
        held = ", ".join(_shown(lr) for lr in stored[:12]) + (", ..." if len(stored) > 12 else "")
        grid = ", ".join(_shown(lr) for lr in config.lrs)
        raise UntrustedFileError(f"it holds runs at lr [{held}], this run's grid is [{grid}]")
    parsed = tuple(_run(run, index, config) for index, run in enumerate(runs))
    keys = {frozenset(snapshot) for run in parsed for snapshot in run.history}
    if len(keys) > 1:  # every probe of a model records the same tensors and layers
        raise UntrustedFileError("its probe snapshots do not all hold the same keys")
    best_lr = _number(entry["best_lr"], "best_lr")
    if best_lr not in config.lrs:
        raise UntrustedFileError(f"its best_lr {_shown(best_lr)} is not one of the grid's LRs")
    elapsed = _number(entry["elapsed_seconds"], "elapsed_seconds")
    if not (math.isfinite(elapsed) and elapsed >= 0):
        raise UntrustedFileError(f"its elapsed_seconds is {elapsed!r}, not a duration")
    environment = entry["environment"]
    if not isinstance(environment, dict):
        raise UntrustedFileError(f"its environment is {_kind(environment)}, not an object")
    for key, value in environment.items():
        if value is not None and not isinstance(value, str | int | float):  # bool is an int
            raise UntrustedFileError(f"its environment's {_key(key)} is {_kind(value)}, not a scalar")
    return SweepResult(
        config=config,
        runs=parsed,
        lr_sensitivity=_number(entry["lr_sensitivity"], "lr_sensitivity"),
        best_lr=best_lr,
        environment=environment,
        elapsed_seconds=elapsed,
    )


def _run(data: dict[str, Any], index: int, config: SweepConfig) -> RunResult:
    """Run ``index`` of an entry, typed, with the losses and probes a run of ``config`` records."""
    where = f"run {index + 1} (lr {_shown(config.lrs[index])})"
    run = _object(data, _RUN_KEYS, where)
    numbers = {name: _number(run[name], f"{where} {name}") for name in _RUN_NUMBERS}
    diverged, at, steps = run["diverged"], run["diverged_at_step"], config.train.steps
    if not isinstance(diverged, bool):
        raise UntrustedFileError(f"{where} diverged is {_kind(diverged)}, not true or false")
    if at is not None and (isinstance(at, bool) or not isinstance(at, int)):
        raise UntrustedFileError(f"{where} diverged_at_step is {_kind(at)}, not a step or null")
    if diverged != (at is not None) or (at is not None and not 0 <= at < steps):
        raise UntrustedFileError(f"{where} diverged is {json.dumps(diverged)} at step {at}, in a run of {steps} steps")
    trained = steps if at is None else at  # a run records a loss per step until it diverges
    losses = run["losses"]
    if not isinstance(losses, list):
        raise UntrustedFileError(f"{where} losses are {_kind(losses)}, not a list")
    if len(losses) != trained:
        raise UntrustedFileError(f"{where} holds {len(losses)} losses, not one per step of its {trained}")
    history = run["history"]
    if not isinstance(history, list):
        raise UntrustedFileError(f"{where} history is {_kind(history)}, not a list")
    probes = list(range(0, trained, config.train.probe_every))  # engine.train_members: every probe_every, and the last
    probes += [steps - 1] if steps - 1 < trained and (steps - 1) % config.train.probe_every else []
    if len(history) != len(probes):
        raise UntrustedFileError(
            f"{where} holds {len(history)} probe snapshots, not the {len(probes)} its {trained} steps record"
        )
    snapshots = tuple(_snapshot(snapshot, f"{where} probe {k + 1}") for k, snapshot in enumerate(history))
    for k, (snapshot, step) in enumerate(zip(snapshots, probes, strict=True)):
        if snapshot[STEP] != step:
            raise UntrustedFileError(f"{where} probe {k + 1} is at step {snapshot[STEP]!r}, not at step {step}")
    return RunResult(
        lr=numbers["lr"],
        initial_loss=numbers["initial_loss"],
        final_loss=numbers["final_loss"],
        eval_loss=numbers["eval_loss"],
        max_attention_logit=numbers["max_attention_logit"],
        log_z_mean=numbers["log_z_mean"],
        diverged=diverged,
        diverged_at_step=at,
        losses=tuple(_finite(loss, f"{where} loss {i + 1}") for i, loss in enumerate(losses)),
        history=snapshots,
    )


def _snapshot(data: Any, where: str) -> dict[str, float]:
    """One probe snapshot: an object of numbers holding at least the keys every probe records."""
    if not isinstance(data, dict):
        raise UntrustedFileError(f"{where} is {_kind(data)}, not an object")
    missing = sorted(_SNAPSHOT_KEYS - data.keys())
    if missing:
        raise UntrustedFileError(f"{where} lacks {', '.join(missing)}")
    return {key: _number(value, f"{where} {_key(key)}") for key, value in data.items()}


def _object(data: Any, keys: frozenset[str], where: str) -> dict[str, Any]:
    """``data`` if it is an object with exactly ``keys``; :class:`UntrustedFileError` if not."""
    if not isinstance(data, dict):
        raise UntrustedFileError(f"{where} is {_kind(data)}, not an object")
    missing, extra = sorted(keys - data.keys()), sorted(data.keys() - keys)
    if missing:
        raise UntrustedFileError(f"{where} lacks {', '.join(missing)}")
    if extra:
        raise UntrustedFileError(f"{where} has the unexpected key {_key(extra[0])}")
    return data


def _number(value: Any, where: str) -> float:
    """A JSON number as a float (NaN and infinities included: what a run measured); not a bool, string or null."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UntrustedFileError(f"{where} is {_kind(value)}, not a number")
    return float(value)


def _finite(value: Any, where: str) -> float:
    """A finite JSON number: a loss the engine recorded (a step whose loss is not finite ends the run instead)."""
    number = _number(value, where)
    if not math.isfinite(number):
        raise UntrustedFileError(f"{where} is {_shown(number)}, but a run records only finite losses")
    return number


def _same_lr(stored: Any, lr: float) -> bool:
    """Whether a stored run's lr is exactly the grid's ``lr`` (a JSON number, not a bool)."""
    return not isinstance(stored, bool) and isinstance(stored, int | float) and stored == lr


def _kind(value: Any) -> str:
    """A JSON value's kind, as a message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _shown(value: Any) -> str:
    """A stored LR as a message shows it: a number exactly, anything else by its kind."""
    return repr(value) if isinstance(value, int | float) and not isinstance(value, bool) else _kind(value)


def _key(key: str) -> str:
    """An untrusted key as a message shows it: quoted, escaped, and cut short."""
    return repr(key[:40] + ("..." if len(key) > 40 else ""))
