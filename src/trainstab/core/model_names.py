"""Model names with keyword options: ``mypkg.models:build[qk_norm=false,init_scale=2]``.

A model name is ``reference``, ``hf:<model_type>`` or ``package.module:callable``,
optionally followed by ``[key=value,...]``:

- for a user factory, the options are keyword arguments: ``build(size, qk_norm=False, init_scale=2.0)``;
- for ``hf:<model_type>``, they are fields of the transformers config, set after the sizes
  (``hf:llama[tie_word_embeddings=true]``);
- the reference takes none: its switches are ``--set`` keys.

Values are parsed as ``true``/``false``, ``none``, an integer, a number, or else kept as text.
The canonical name (options sorted by key, values written back the same way) is what reports,
baseline folders and caches see, so ``[b=1,a=2]`` and ``[a=2,b=1]`` are one model.
This module needs no torch: the plugin and the baseline code read names without building models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from trainstab.core.errors import TrainstabError

OptionValue = bool | int | float | str | None

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_value(raw: str) -> OptionValue:
    """A model option's text as a value: true/false, none, an integer, a number, else the text itself."""
    text = raw.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def format_value(value: Any) -> str:
    """A model option's value as text that :func:`parse_value` reads back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float) and not math.isfinite(value):
        raise TrainstabError(f"model option value {value!r} is not finite; a model name carries finite numbers")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if any(c in value for c in ",[]=") or parse_value(value) != value:
            raise TrainstabError(
                f"model option text {value!r} would not read back as the same text from a model name "
                "(it holds , [ ] or =, or reads as a number, true/false or none); pass a number or a bool instead"
            )
        return value
    raise TrainstabError(
        f"model option value {value!r} is a {type(value).__name__}; options are true/false, none, numbers or text"
    )


def split_model_name(name: str) -> tuple[str, dict[str, OptionValue]]:
    """``"pkg.mod:build[a=1,b=true]"`` -> ``("pkg.mod:build", {"a": 1, "b": True})``; a malformed name raises."""
    if not name.isprintable():  # a newline in a name would print a line of its own in every header and log
        raise TrainstabError(f"model {name!r} holds a control character (a newline, a tab); write it on one line")
    base, bracket, rest = name.partition("[")
    if not bracket:
        if "]" in name:
            raise TrainstabError(f"model {name!r} has ']' without '['; write options as {base}[key=value,...]")
        return name.strip(), {}
    if not rest.endswith("]") or "[" in rest or "]" in rest[:-1]:
        raise TrainstabError(
            f"model {name!r}: options go in one pair of brackets at the end, e.g. mypkg.models:build[qk_norm=false]"
        )
    options: dict[str, OptionValue] = {}
    body = rest[:-1].strip()
    for item in body.split(",") if body else []:
        key, equals, raw = item.partition("=")
        key = key.strip()
        if not equals or not _KEY.fullmatch(key):
            raise TrainstabError(
                f"model {name!r}: option {item.strip()!r} is not key=value with a Python name as key, "
                "e.g. mypkg.models:build[qk_norm=false,init_scale=2]"
            )
        if key in options:
            raise TrainstabError(f"model {name!r} sets option {key!r} twice; keep one")
        value = parse_value(raw)
        if "=" in raw or (isinstance(value, float) and not math.isfinite(value)):
            raise TrainstabError(
                f"model {name!r}: option {item.strip()!r} has no usable value; give true/false, none, a finite "
                "number or text without , [ ] ="
            )
        options[key] = value
    return base.strip(), options


def join_model_name(base: str, options: Mapping[str, Any]) -> str:
    """The canonical name of ``base`` with ``options``: sorted by key, no brackets when there are none."""
    for key in options:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise TrainstabError(f"model option name {key!r} is not a Python identifier; options are keyword arguments")
    if not options:
        return base
    return base + "[" + ",".join(f"{key}={format_value(options[key])}" for key in sorted(options)) + "]"


def canonical_model_name(name: str, options: Mapping[str, Any] | None = None) -> str:
    """``name`` written canonically, with ``options`` added (they win over options already in the name)."""
    base, named = split_model_name(name)
    return join_model_name(base, {**named, **(options or {})})
