"""Options declared where their values live: on the fields of the records they set.

A field of a bounds or configuration record that a user may set from a flag or an ini key is declared with
:func:`option` instead of a plain default::

    max_lr: float = option(0.3, "max-lr", positive, "checks look at LRs up to this")

That one line is the option: its flag (``--trainstab-max-lr`` in pytest, ``--max-lr`` in the CLI), its ini key
(``trainstab_max_lr``), the parser its values go through, its help text and its default (the field's). The
option table of :mod:`trainstab.run.options` is read off these fields; :class:`~trainstab.run.options.RunOptions`
holds each option's value. An option that sets a field of two records (``max-lr`` sets the battery's and the
scaling checks') is declared on both with the same parser; one of them may leave the help out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: How each front end spells a flag, and the prefix of the ini keys: stated here only.
PYTEST_FLAGS = "--trainstab-"
CLI_FLAGS = "--"
INI_PREFIX = "trainstab_"

_KEY = "trainstab_option"


@dataclass(frozen=True)
class OptionSpec:
    """An option as one field declares it."""

    name: str  # "max-lr": --trainstab-max-lr, --max-lr, trainstab_max_lr
    parse: Callable[[Any], Any]  # text, or a TOML value (int, float, bool, list) -> typed value; ValueError if bad
    help: str  # "" where another record's field declares the same option with its help
    bare: str | None = None  # what the flag given without a value means (None: it needs one)


def option(
    default: Any = dataclasses.MISSING,
    name: str = "",
    parse: Callable[[Any], Any] | None = None,
    help: str = "",
    *,
    default_factory: Callable[[], Any] | None = None,
    bare: str | None = None,
) -> Any:
    """A dataclass field that an option sets: ``default`` (or ``default_factory``) as a field's, plus the option's
    ``name``, ``parse`` and ``help`` (module docstring); ``bare``: the value its flag means when given alone."""
    if not name or parse is None:
        raise TypeError("option() needs the option's name and parser")
    metadata = {_KEY: OptionSpec(name, parse, help, bare)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared_options(record: type) -> tuple[tuple[str, OptionSpec], ...]:
    """The fields of the dataclass ``record`` that an option sets, in field order: (field name, its option)."""
    return tuple((field.name, field.metadata[_KEY]) for field in dataclasses.fields(record) if _KEY in field.metadata)
