"""``--set key=value`` overrides, typed against the config dataclasses.

Every field of :class:`ModelConfig` and :class:`TrainConfig` can be set by
name. Values are parsed by the field's declared type, so a typo or a wrong
type is an error that lists what would have been accepted.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal

from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig
from trainstab.core.errors import TrainstabError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def settable_keys() -> dict[str, type]:
    """Map every overridable key to the config class that owns it."""
    keys: dict[str, type] = {}
    for cls in (ModelConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            keys[f.name] = cls
    return keys


def apply_overrides(config: SweepConfig, assignments: Sequence[str]) -> SweepConfig:
    """Return ``config`` with each ``key=value`` in ``assignments`` applied."""
    keys = settable_keys()
    model_changes: dict[str, Any] = {}
    train_changes: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TrainstabError(f"--set {assignment!r} is not of the form key=value, e.g. --set qk_layernorm=false")
        if key not in keys:
            raise TrainstabError(f"unknown --set key {key!r}; known keys: {', '.join(sorted(keys))}")
        owner = keys[key]
        hint = typing.get_type_hints(owner)[key]
        value = _parse(key, raw.strip(), hint)
        (model_changes if owner is ModelConfig else train_changes)[key] = value
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, **model_changes),
        train=dataclasses.replace(config.train, **train_changes),
    )


def _parse(key: str, raw: str, hint: Any) -> Any:
    """Parse ``raw`` as a value of type ``hint`` or raise a one-line error."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if type(None) in options and raw.lower() in {"none", "null", ""}:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _parse(key, raw, inner)
    if origin is Literal:
        choices = typing.get_args(hint)
        if raw not in choices:
            raise TrainstabError(f"--set {key}={raw}: expected one of {', '.join(choices)}")
        return raw
    if hint is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise TrainstabError(f"--set {key}={raw}: expected true or false")
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise TrainstabError(f"--set {key}={raw}: expected an integer, e.g. --set {key}=4") from None
    if hint is float:
        try:
            return float(raw)
        except ValueError:
            raise TrainstabError(f"--set {key}={raw}: expected a number, e.g. --set {key}=1e-4") from None
    if hint is str:  # checked where it is used (config.validate: e.g. the optimizer's name)
        return raw
    raise TypeError(f"no parser for field {key} of type {hint!r}")  # a programming error, not user input
