"""The options of a stability run, shared by the pytest plugin and ``trainstab check``.

One table names every option once: the plugin registers it as
``--trainstab-<name>`` plus the ini key, the CLI as ``--<name>``; both turn
the raw strings into typed values here, so the two accept the same things and
reject bad values with the same message. Imports neither torch nor pytest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from trainstab.config import SweepConfig, int_list, lr_list
from trainstab.errors import TrainstabError
from trainstab.model_names import canonical_model_name
from trainstab.overrides import apply_overrides

_Number = TypeVar("_Number", int, float)


@dataclass(frozen=True)
class Option:
    """One option of a stability run."""

    name: str  # --trainstab-<name> in pytest, --<name> in the CLI
    parse: Callable[[str], Any]  # raw string -> typed value; ValueError when malformed
    default: str | None  # the raw default (None: the option is off or the library default applies)
    help: str

    @property
    def key(self) -> str:
        """The ini key, and the key of the parsed options dict (``trainstab_max_lr``)."""
        return "trainstab_" + self.name.replace("-", "_")


#: The battery's checks, in report order (trainstab.checks.BATTERY holds the code; named here without torch).
CHECK_NAMES = (
    "no_divergence",
    "attention_logits",
    "log_z",
    "lr_sensitivity",
    "grad_rms_vs_eps",
    "loss_spikes",
    "parameters_move",
)


def check_list(value: str) -> frozenset[str]:
    """Comma-separated battery check names (``none`` for the empty set); ValueError on an unknown name."""
    names = {name.strip() for name in value.split(",") if name.strip()}
    if names == {"none"}:
        return frozenset()
    if not names or not names <= set(CHECK_NAMES):
        raise ValueError(value)
    return frozenset(names)


def model_name(value: str) -> str:
    """A model name written canonically (options sorted); a malformed one raises :class:`TrainstabError`."""
    return canonical_model_name(value)


def _accepted(number: _Number, ok: bool, value: str) -> _Number:
    """``number`` when ``ok``, else the ValueError every parser of this table raises for a bad value."""
    if not ok:
        raise ValueError(value)
    return number


def positive(value: str) -> float:
    """A finite number above 0 (ValueError otherwise: NaN, inf, 0 and negatives are not bounds)."""
    number = float(value)
    return _accepted(number, math.isfinite(number) and number > 0, value)


def non_negative(value: str) -> float:
    """A finite number, 0 or above (ValueError otherwise)."""
    number = float(value)
    return _accepted(number, math.isfinite(number) and number >= 0, value)


def seed(value: str) -> int:
    """A seed: an integer from 0 to 2**63-1, what torch.manual_seed takes (ValueError otherwise)."""
    number = int(value)
    return _accepted(number, 0 <= number <= 2**63 - 1, value)


def steps(value: str) -> int:
    """A positive number of optimizer steps, at most a million (ValueError otherwise)."""
    number = int(value)
    return _accepted(number, 0 < number <= 1_000_000, value)


def positive_int(value: str) -> int:
    """A whole number above 0 (ValueError otherwise)."""
    number = int(value)
    return _accepted(number, number > 0, value)


def decades(value: str) -> float:
    """A number of decades of parameters, above 0 and at most 10 (ValueError otherwise)."""
    number = float(value)
    return _accepted(number, 0 < number <= 10, value)


def pattern_list(value: str) -> tuple[str, ...]:
    """Comma-separated shell-style patterns of parameter names, e.g. ``*/k_norm/bias,pos_emb``."""
    patterns = tuple(part.strip() for part in value.split(",") if part.strip())
    if not patterns:
        raise ValueError(value)
    return patterns


# Thresholds default to the battery's (trainstab.checks.Thresholds).
OPTIONS: tuple[Option, ...] = (
    Option("model", model_name, "reference", "default model: reference, hf:<type> or package.module:factory[k=v]"),
    Option("profile", str, "default", "steps and LR grid preset: quick, default or thorough"),
    Option("seed", seed, "0", "seed of init and data order"),
    Option("steps", steps, None, "optimizer steps per run (default: 200)"),
    Option("lrs", lr_list, None, "comma-separated LR grid (default: the paper's)"),
    Option("corpus", str, None, "token file instead of the bundled corpus"),
    Option("device", str, "cpu", "device to train on (only cpu is supported)"),
    Option("max-lr", positive, None, "checks look at LRs up to this (default 0.3)"),
    Option("attention-logit-bound", positive, None, "max attention logit (1e3)"),
    Option("log-z-bound", positive, None, "max |log Z| (20)"),
    Option("lr-sensitivity-bound", positive, None, "max LR sensitivity (1.0: gross problems; baselines gate the rest)"),
    Option("grad-rms-over-eps", non_negative, None, "min gradient RMS / AdamW eps (10)"),
    Option("spike-score-bound", non_negative, None, "max loss spike score (0)"),
    Option(
        "report-only",
        check_list,
        None,
        "checks shown, reported and baselined that never fail a test (grad_rms_vs_eps,loss_spikes; none: all fail)",
    ),
    Option(
        "ignore-params",
        pattern_list,
        None,
        "parameter tensors grad_rms_vs_eps and parameters_move leave out: patterns like */k_norm/bias,pos_emb",
    ),
    Option("report", str, None, "write a JSON, plots and an HTML page of every check to this folder"),
    Option("baselines", str, None, "folder of committed baselines to compare with (off when unset)"),
    Option("target-params", positive, None, "size the scaling forecasts extrapolate to (1e9)"),
    Option(
        "max-extrapolation",
        decades,
        None,
        "decades past the largest size measured that the attention forecast may extrapolate (2)",
    ),
    Option("widths", int_list, None, "width ladder of the scaling checks (32,48,64)"),
    Option("depths", int_list, None, "depth ladder of the scaling checks (1,2,4)"),
)
PROFILE_NAMES = ("quick", "default", "thorough")  # trainstab.config.PROFILES, named here without importing torch
_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "lr_list": "numbers like 1e-3,1e-2",
    "int_list": "integers like 32,48,64",
    "check_list": f"none or check names from {', '.join(CHECK_NAMES)}",
    "pattern_list": "comma-separated parameter name patterns like */k_norm/bias",
    "decades": "a number of decades above 0 and at most 10, e.g. 2",
    "positive": "a finite number above 0",
    "non_negative": "a finite number, 0 or above",
    "seed": "an integer from 0 to 2**63-1",
    "steps": "a whole number of steps from 1 to 1000000",
    "positive_int": "a whole number above 0",
}


def expected(parse: Callable[[str], Any]) -> str:
    """What a parser of this table accepts, in words ("a finite number above 0")."""
    return _EXPECTED.get(parse.__name__, parse.__name__)


def parse_options(
    raw: dict[str, tuple[str, Any]], overrides: list[str], overrides_source: str = "trainstab_set / --trainstab-set"
) -> dict[str, Any]:
    """Typed options from ``{key: (where it came from, raw value)}`` and the ``key=value`` overrides.

    Missing or empty values take the option's default. Raises
    :class:`TrainstabError` naming the option (as the user wrote it) and what was expected.
    """
    values: dict[str, Any] = {}
    for option in OPTIONS:
        source, value = raw.get(option.key, (option.key, None))
        if value == "" and source.startswith("--"):  # --lrs '' on a command line: a mistake, not "the default"
            raise TrainstabError(f"{source} is empty; give a value ({_EXPECTED.get(option.parse.__name__, 'one')}) "
                                 "or leave the flag out")  # fmt: skip
        if value in (None, "", []):
            value = option.default
        if value is None:
            values[option.key] = None
            continue
        try:
            values[option.key] = option.parse(value)
        except ValueError:
            expected = _EXPECTED.get(option.parse.__name__, option.parse.__name__)
            raise TrainstabError(f"{source}={value!r}: expected {expected}") from None
    if values["trainstab_device"] != "cpu":
        raise TrainstabError(
            f"trainstab device {values['trainstab_device']!r} is not supported: trainstab trains on the CPU "
            "(drop the option or use cpu)"
        )
    if values["trainstab_profile"] not in PROFILE_NAMES:
        raise TrainstabError(
            f"trainstab profile {values['trainstab_profile']!r} is unknown; use one of {', '.join(PROFILE_NAMES)}"
        )
    try:  # checked now, not in every test
        apply_overrides(SweepConfig(), overrides)
    except TrainstabError as error:
        raise TrainstabError(f"{overrides_source}: {error}") from None
    values["trainstab_set"] = list(overrides)
    return values
