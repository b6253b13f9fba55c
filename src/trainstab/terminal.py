"""What the CLI's terminal can show: ASCII stand-ins for the few symbols an output encoding may lack.

A CI job with ``PYTHONIOENCODING=ascii`` (or a C locale on an old system) cannot encode the
"·" between summary fields or the "µ" of µParam: Python raises ``UnicodeEncodeError`` mid-run,
after minutes of training. The CLI's own streams therefore write what the encoding lacks as its
closest ASCII. Only the ``trainstab`` process's streams are changed, never a pytest session's
(pytest escapes what its terminal cannot show by itself).
"""

from __future__ import annotations

import codecs
import io
import sys

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
