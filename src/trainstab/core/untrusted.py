"""Reading JSON files that someone else, a merge or a crash may have damaged: baselines and cache entries.

A file a gate reads is untrusted input. Before its content is looked at, it must be a regular file
(a named pipe would hang the run, ``/dev/zero`` would fill the memory) under a size cap; its text
must be UTF-8 JSON with no key twice in one object (a merge that leaves two copies of a metric would
otherwise let the last one win silently), no integer longer than a float can hold, no nesting deeper
than the format has, and, unless asked for, no ``NaN`` or infinity. What it means is then checked by
the reader of each format (:mod:`trainstab.gate.baseline`, :mod:`trainstab.cache.session_cache`).
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

MAX_DEPTH = 16  # the deepest format (a cache entry's runs -> run -> history -> probe) nests 5 levels
MAX_INT_DIGITS = 20  # any count or step a file holds fits; a 400-digit integer is damage, not data

_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


class UntrustedFileError(ValueError):
    """A file that cannot be read as the JSON it should be; the message says why, without the path."""


def read_json_file(path: Path, max_bytes: int, allow_nan: bool = False, owner_only: bool = False) -> Any:
    """The JSON value in the file at ``path``, read as untrusted input; :class:`UntrustedFileError` if unusable.

    ``max_bytes`` caps the file's size; ``allow_nan`` accepts ``NaN`` and infinities (a private cache stores
    them exactly); ``owner_only`` refuses a link or a file of another user (a private folder's files).
    Raises FileNotFoundError when there is no file.
    """
    return parse_json(read_text_file(path, max_bytes, owner_only), allow_nan)


def read_text_file(path: Path, max_bytes: int, owner_only: bool = False) -> str:
    """The UTF-8 text of the regular file at ``path``, at most ``max_bytes`` long (see :func:`read_json_file`)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (os.O_NOFOLLOW if owner_only else 0)  # a named pipe opens, never waits
    try:
        handle = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as error:
        if owner_only and error.errno == errno.ELOOP:
            raise UntrustedFileError("is a link, which this private folder never holds") from None
        raise UntrustedFileError(f"cannot be read ({error.strerror or error})") from None
    try:
        info = os.fstat(handle)  # of what was opened: a name swapped after a check cannot fool it
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise UntrustedFileError(f"is {kind}, not a regular file")
        if owner_only and info.st_uid != os.getuid():
            raise UntrustedFileError("belongs to another user")
        if info.st_size > max_bytes:
            raise UntrustedFileError(f"is {info.st_size} bytes, more than the {max_bytes} such a file can be")
        raw = b""
        while len(raw) <= max_bytes:  # the size can grow after fstat
            block = os.read(handle, max_bytes + 1 - len(raw))
            if not block:
                break
            raw += block
    finally:
        os.close(handle)
    if len(raw) > max_bytes:
        raise UntrustedFileError(f"is more than the {max_bytes} bytes such a file can be")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UntrustedFileError("is not UTF-8 text") from None


def parse_json(text: str, allow_nan: bool = False) -> Any:
    """``text`` parsed as untrusted JSON (see the module's rules); :class:`UntrustedFileError` if it breaks one."""
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_int=_bounded_int,
            parse_float=lambda digits: _finite(float(digits), digits, allow_nan),
            parse_constant=lambda name: _finite(float(name), name, allow_nan),
        )
    except json.JSONDecodeError as error:
        raise UntrustedFileError(
            f"is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    except RecursionError:
        raise UntrustedFileError("is nested too deeply to be such a file") from None
    if _depth(value) > MAX_DEPTH:
        raise UntrustedFileError(f"is nested more than {MAX_DEPTH} levels deep, deeper than such a file can be")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's keys, refusing one that appears twice (JSON readers keep the last copy silently)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise UntrustedFileError(f'has the key "{key}" twice in one object (a merge left both copies?)')
        seen[key] = value
    return seen


def _bounded_int(digits: str) -> int:
    """An integer no longer than :data:`MAX_INT_DIGITS` digits."""
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise UntrustedFileError(f"holds an integer of {len(digits.lstrip('-'))} digits ({digits[:12]}...)")
    return int(digits)


def _finite(value: float, written: str, allow_nan: bool) -> float:
    """``value`` if finite (or NaN and infinities are allowed); ``1e999`` reads as infinity, so it is checked too."""
    if not allow_nan and not math.isfinite(value):
        raise UntrustedFileError(
            f"holds {written[:24]}, which is not a finite number (write null for a value that was not measured)"
        )
    return value


def _depth(value: Any) -> int:
    """How deep lists and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest
