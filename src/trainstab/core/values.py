"""The values a user gives trainstab, parsed: one parser per kind of value, and the limits they hold values to.

A value reaches a parser as text (a flag, an ini file, ``[tool.pytest.ini_options]``) or with the type a TOML
file gives it (``[tool.pytest]``, ``pytest.toml``): int, float, bool, list. Each parser takes every kind its
option can mean and raises ``ValueError`` for anything else; :func:`expected` says in words what it accepts, for
the "expected ..." of every message about a bad value. The options that use them are declared on the fields of
the records they set (:mod:`trainstab.core.option_fields`). Imports nothing above ``core``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from trainstab.core.optimizer_table import BUILT_IN, is_optimizer

Precision = Literal["fp32", "bf16"]
Executor = Literal["local", "ray"]

#: The devices a sweep trains on: the CPU, or a CUDA GPU (``cuda`` is the current one, ``cuda:N`` the N-th).
DEVICE_PATTERN = r"cpu|cuda(:\d+)?"
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")
EXECUTORS: tuple[Executor, ...] = ("local", "ray")
#: Ranges every front end is held to before any training (parsed flags here; ``--set`` values by
#: :func:`trainstab.core.config.validate`, with the same numbers).
MAX_STEPS = 1_000_000  # a proxy trains hundreds of steps; a million is already hours
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit seed
MAX_DECADES = 10.0  # an extrapolation further than 10 decades of parameters is not a forecast

_Parsed = TypeVar("_Parsed")
_Item = TypeVar("_Item")
_Parser = TypeVar("_Parser", bound=Callable[[Any], Any])

#: What each parser accepts, in words (text, or a function giving it where the words name a list known later),
#: and the TOML array a configuration file may write instead of comma-separated text.
_ACCEPTS: dict[Callable[[Any], Any], tuple[str | Callable[[], str], str | None]] = {}


def accepts(words: str | Callable[[], str], array: str | None = None) -> Callable[[_Parser], _Parser]:
    """Mark a parser with what it accepts, in words (``"a finite number above 0"``), and, for a list, the TOML
    array a file may hold instead (``"[32, 48, 64]"``): what :func:`expected` says about it."""

    def marked(parse: _Parser) -> _Parser:
        _ACCEPTS[parse] = (words, array)
        return parse

    return marked


def expected(parse: Callable[[Any], Any], in_a_file: bool = False) -> str:
    """What ``parse`` accepts, in words ("a finite number above 0"); a file may also hold arrays."""
    words, example = _ACCEPTS.get(parse, (parse.__name__, None))
    said = words if isinstance(words, str) else words()
    return f"{said}, or a TOML array such as {example}" if in_a_file and example else said


class NotAccepted(ValueError):
    """A value of a type the option never takes (a TOML boolean for a number): messages say which type it was."""

    def __init__(self, value: object) -> None:
        super().__init__(value)
        self.kind = _KINDS.get(type(value), type(value).__name__)


#: How messages name a configuration value's TOML type.
_KINDS = {bool: "a boolean", int: "an integer", float: "a float", list: "an array", dict: "a table"}


def _text(value: Any) -> str:
    """Text, as it stands; anything else is not accepted."""
    if not isinstance(value, str):
        raise NotAccepted(value)
    return value


def _whole(value: Any) -> int:
    """An integer: a TOML integer or its text (not a boolean, not a float such as 1.0)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise NotAccepted(value)
    return int(value)


def _real(value: Any) -> float:
    """A number: a TOML integer or float, or its text (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise NotAccepted(value)
    return float(value)


def items(value: Any) -> list[Any]:
    """A list option's items: a TOML array's, or the non-empty parts of comma-separated text."""
    if isinstance(value, list):
        return value
    return [part.strip() for part in _text(value).split(",") if part.strip()]


def each(found: list[Any], parse: Callable[[Any], _Item]) -> tuple[_Item, ...]:
    """``parse`` of every item; a bad item makes the whole value bad (the message shows the whole value)."""
    try:
        return tuple(parse(item) for item in found)
    except ValueError:
        raise ValueError(found) from None


def accepted(parsed: _Parsed, ok: bool, value: Any) -> _Parsed:
    """``parsed`` when ``ok``, else the ValueError every parser raises for a bad value."""
    if not ok:
        raise ValueError(value)
    return parsed


@accepts("text")
def text(value: Any) -> str:
    """Text: a file or folder name (ValueError for a TOML number, boolean or array)."""
    return _text(value)


@accepts("comma-separated numbers such as 1e-3,1e-2", "[1e-3, 1e-2]")
def lr_grid(value: Any) -> tuple[float, ...]:
    """Learning rates: comma-separated text such as ``1e-3,1e-2`` or a TOML array (ValueError if none)."""
    lrs = each(items(value), _real)
    return accepted(lrs, bool(lrs), value)


@accepts("comma-separated integers such as 32,48,64", "[32, 48, 64]")
def size_ladder(value: Any) -> tuple[int, ...]:
    """Sizes of a ladder: comma-separated integers such as ``32,48,64`` or a TOML array (ValueError if none)."""
    sizes = each(items(value), _whole)
    return accepted(sizes, bool(sizes), value)


@accepts("cpu, cuda or cuda:N (N the GPU's index)")
def device(value: Any) -> str:
    """A device: ``cpu``, ``cuda`` or ``cuda:N`` (ValueError otherwise; whether it exists is checked at training)."""
    name = _text(value)
    if not re.fullmatch(DEVICE_PATTERN, name):
        raise ValueError(value)
    return name


@accepts(" or ".join(PRECISIONS))
def precision(value: Any) -> Precision:
    """A training precision: ``fp32`` or ``bf16`` (ValueError otherwise)."""
    for known in PRECISIONS:
        if _text(value) == known:
            return known
    raise ValueError(value)


@accepts(" or ".join(EXECUTORS))
def executor(value: Any) -> Executor:
    """Where stacks train: ``local`` processes or ``ray`` tasks (ValueError otherwise)."""
    for known in EXECUTORS:
        if _text(value) == known:
            return known
    raise ValueError(value)


@accepts(f"one of {', '.join(BUILT_IN)}, one a team registered, or package.module:callable")
def optimizer(value: Any) -> str:
    """An optimizer: a built-in name, a team's registered one or package.module:callable (ValueError otherwise)."""
    name = _text(value)
    if not is_optimizer(name):
        raise ValueError(value)
    return name


@accepts("a finite number above 0")
def positive(value: Any) -> float:
    """A finite number above 0 (ValueError otherwise: NaN, inf, 0 and negatives are not bounds)."""
    found = _real(value)
    return accepted(found, math.isfinite(found) and found > 0, value)


@accepts("a finite number, 0 or above")
def non_negative(value: Any) -> float:
    """A finite number, 0 or above (ValueError otherwise)."""
    found = _real(value)
    return accepted(found, math.isfinite(found) and found >= 0, value)


@accepts("an integer from 0 to 2**63-1")
def seed(value: Any) -> int:
    """A seed: an integer from 0 to :data:`MAX_SEED`, what torch.manual_seed takes (ValueError otherwise)."""
    found = _whole(value)
    return accepted(found, 0 <= found <= MAX_SEED, value)


@accepts(f"a whole number of steps from 1 to {MAX_STEPS}")
def steps(value: Any) -> int:
    """A positive number of optimizer steps, at most :data:`MAX_STEPS` (ValueError otherwise)."""
    found = _whole(value)
    return accepted(found, 0 < found <= MAX_STEPS, value)


@accepts("a whole number above 0")
def positive_int(value: Any) -> int:
    """A whole number above 0 (ValueError otherwise)."""
    found = _whole(value)
    return accepted(found, found > 0, value)


@accepts(f"a number of decades above 0 and at most {MAX_DECADES:g}, e.g. 2")
def decades(value: Any) -> float:
    """A number of decades of parameters, above 0 and at most :data:`MAX_DECADES` (ValueError otherwise)."""
    found = _real(value)
    return accepted(found, 0 < found <= MAX_DECADES, value)


@accepts("comma-separated parameter name patterns like *.k_norm.bias", '["*.k_norm.bias"]')
def pattern_list(value: Any) -> tuple[str, ...]:
    """Shell-style patterns of parameter names, comma-separated (``*.k_norm.bias,pos_emb``) or a TOML array."""
    patterns = each(items(value), _text)
    return accepted(patterns, bool(patterns) or isinstance(value, list), value)


def name_list(value: Any) -> set[str]:
    """Names, comma-separated or a TOML array (ValueError for anything that is not text)."""
    return set(each(items(value), _text))


def number(value: float) -> str:
    """A number as a user writes it: ``0.3``, ``1e9``, ``1e-5`` (not ``1e+09``)."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{value:g}")


def written(value: Any) -> str:
    """A value as messages show it: text quoted, TOML's other values as TOML writes them (``true``, ``[1, 2]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(written(item) for item in value) + "]"
    return repr(value)
