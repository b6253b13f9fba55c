"""What the CLI's terminal can show: ASCII stand-ins for the few symbols an output encoding may lack, and a
standard output that carries data alone.

A CI job with ``PYTHONIOENCODING=ascii`` (or a C locale on an old system) cannot encode the
"·" between summary fields or the "µ" of µParam: Python raises ``UnicodeEncodeError`` mid-run,
after minutes of training. The CLI's own streams therefore write what the encoding lacks as its
closest ASCII. Only the ``trainstab`` process's streams are changed, never a pytest session's
(pytest escapes what its terminal cannot show by itself).

``--json -`` pipes the JSON into another program, so nothing else may reach standard output: not
trainstab's table, and not a model's ``print()`` either, in this process or in a worker process
that inherits its file descriptors (:func:`standard_output_for_data_alone`).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import TextIO

ERROR_HANDLER = "trainstab-ascii"
#: Stand-ins for the symbols trainstab writes; anything else the encoding lacks becomes "?".
ASCII_FOR = {"·": "|", "µ": "u", "×": "x", "→": "->", "≥": ">=", "≤": "<=", "—": "-", "–": "-", "…": "..."}


def _closest_ascii(error: UnicodeError) -> tuple[str, int]:
    """The codec error handler: each character the encoding lacks as its stand-in."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    lacking = error.object[error.start : error.end]
    return "".join(ASCII_FOR.get(character, "?") for character in lacking), error.end


def use_ascii_where_needed() -> None:
    """Make standard output and error write stand-ins instead of failing, where their encoding lacks a symbol."""
    codecs.register_error(ERROR_HANDLER, _closest_ascii)
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper):
            continue  # captured or replaced by a caller: theirs to configure
        try:
            "".join(ASCII_FOR).encode(stream.encoding or "ascii")
        except (UnicodeEncodeError, LookupError):
            stream.reconfigure(errors=ERROR_HANDLER)


#: The real standard output while :func:`standard_output_for_data_alone` sends everything else to stderr.
_data: TextIO | None = None


def data_output() -> TextIO:
    """The stream for data a pipe reads (``--json -``): standard output, also while
    :func:`standard_output_for_data_alone` sends everything else to stderr."""
    return _data if _data is not None else sys.stdout


def _flushed(stream: TextIO) -> None:
    """Flush ``stream``, which may have been closed or broken by the code the block ran (a closed pipe)."""
    with contextlib.suppress(OSError, ValueError):
        stream.flush()


def _fd_1_to_stderr() -> int | None:
    """Point file descriptor 1 at stderr's file; the descriptor of what it was (None: there is no fd 1 or 2)."""
    try:
        saved = os.dup(1)  # not inheritable: a worker process never holds the real standard output
    except OSError:
        return None
    try:
        os.dup2(2, 1)
    except OSError:
        os.close(saved)
        return None
    return saved


@contextlib.contextmanager
def standard_output_for_data_alone(active: bool = True) -> Iterator[None]:
    """While the block runs, only what is written to :func:`data_output` reaches standard output: a model's
    ``print()``, a C library's write to fd 1 and a worker process's output go to stderr instead.

    ``sys.stdout`` is ``sys.stderr`` and fd 1 points at stderr's file, which worker processes inherit; both are
    put back when the block ends, since the CLI's ``main`` also runs inside other processes (tests, pytester).
    Does nothing when not ``active``.
    """
    global _data
    if not active:
        yield
        return
    original = sys.stdout
    _flushed(original)  # what was written before the block belongs where it was going
    saved = _fd_1_to_stderr()
    try:
        real = original.fileno() == 1
    except (AttributeError, OSError, ValueError):  # captured by the caller (pytest's capsys): fd 1 never reached it
        real = False
    if saved is not None and real:
        encoding, errors = getattr(original, "encoding", None) or "utf-8", getattr(original, "errors", None)
        data: TextIO = open(saved, "w", encoding=encoding, errors=errors, closefd=False)  # noqa: SIM115 (closed when the block ends)
    else:
        data = original
    previous, _data = _data, data
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout, _data = original, previous
        _flushed(data)
        if data is not original:
            with contextlib.suppress(OSError, ValueError):
                data.close()  # the wrapper only: the descriptor is closed below, once fd 1 is back
        _flushed(original)  # a stray write buffered in it goes to stderr, where fd 1 still points
        _flushed(sys.stderr)
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
