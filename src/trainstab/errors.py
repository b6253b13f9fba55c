"""User-facing errors: one line that says what was wrong and how to fix it."""

from __future__ import annotations


class TrainstabError(Exception):
    """A problem with the user's input or set-up, reported without a traceback.

    The message is a single line naming the problem and the fix; the CLI prints
    it and exits with status 2.
    """
