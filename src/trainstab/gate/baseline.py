"""Baselines: a check's metrics on main, committed, and the comparison a pull request is gated on.

One human-diffable JSON file per model and check (``<folder>/<model>/<check>.json``)
records the metrics behind that check, per learning rate where they are per
run, with the protocol they were measured under (steps, LR grid, sizes,
corpus), the rest of the recipe (shown as "changed since baseline" context),
the environment, and the tolerance of each gated metric. A metric is worse
when it moved in its bad direction by more than ``abs + rel * |baseline|``.

Reading never imports torch: the plugin reads baselines for its header.
The workflow (missing -> written, mismatch -> ``.obtained`` beside it, flags
to rewrite) lives in :mod:`trainstab.gate.verdict`; this module only turns sweeps
into metrics, files into validated baselines and pairs of them into verdicts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainstab.checks import registry
from trainstab.checks.battery import BATTERY, Thresholds
from trainstab.core.config import REFERENCE_ONLY_KEYS, resolved_config
from trainstab.core.environment import light_environment
from trainstab.core.errors import TrainstabError
from trainstab.core.files import json_text, shown
from trainstab.core.model_names import split_model_name
from trainstab.core.results import Metric, SweepResult, Tolerance, up_to
from trainstab.core.untrusted import UntrustedFileError, parse_json, read_json_file, read_text_file
from trainstab.run.options import RunOptions, run_seed

FORMAT_VERSION = 1  # the "trainstab_baseline" field; bumped when the layout changes
SIGNIFICANT_DIGITS = 4  # values are rounded so that diffs show changes, not float noise
#: A baseline file is committed input anyone with a pull request can edit: refused above this size, before it is
#: read. The largest one the battery writes for a 30-LR grid (lr_sensitivity's, with loss curves) is 6 KB; 1 MiB
#: leaves 100x room for a long grid and a team's notes, and keeps a symlink to /dev/zero from filling memory.
MAX_BYTES = 1 << 20
#: The largest rel or abs a file may set. A tolerance is a team's to loosen for one model, up to switching the
#: comparison off: a millionfold move already is off, so a larger number is a typo or damage, not a choice.
MAX_TOLERANCE = 1e6
#: The top-level fields of the format. Any other top-level key is a team's own ("notes"): never read, and kept
#: as it is when a flag rewrites the file.
FIELDS = frozenset(
    ("trainstab_baseline", "model", "check", "max_lr", "environment", "protocol", "recipe", "tolerances", "metrics")
)
#: Longest environment value the header prints: a value is one line on a terminal, not a wrapped screenful.
SHOWN_CHARACTERS = 120


def _battery_metrics() -> dict[str, Metric]:
    """Every metric the battery's checks record, by name (each check carries its own: trainstab.checks.battery)."""
    return {metric.name: metric for check in BATTERY.values() for metric in check.metrics}


#: The battery's gated metrics and their default tolerances (stated on each metric in trainstab.checks.battery).
TOLERANCES: dict[str, Tolerance] = {
    name: metric.tolerance for name, metric in _battery_metrics().items() if metric.tolerance is not None
}


def gated_tolerances() -> dict[str, Tolerance]:
    """The default tolerance of every gated metric of every registered check (a team's own checks included)."""
    return {name: metric.tolerance for name, metric in known_metrics().items() if metric.tolerance is not None}


#: Settings that define the measurement: a baseline taken under others is not comparable.
PROTOCOL_KEYS = (
    "lrs",
    "train.steps",
    "train.batch_size",
    "train.probe_every",
    "train.final_loss_fraction",
    "model.vocab_size",
    "model.context_length",
    "model.width",
    "model.depth",
    "train.optimizer",  # another optimizer is another measurement: a PR that swaps it is not compared with main's
    "train.device",  # cpu or cuda (not which GPU): kernels differ, and a GPU rerun is repeatable, not bit-exact
    "train.precision",  # fp32 or bf16: bf16 moves the numbers by more than the kernel-drift tolerances allow
    "corpus",
)
#: Settings added after baselines were first written, with the value every older baseline was measured with:
#: a baseline without the key reads as having that value, so an upgrade alone never shows as a change.
ADDED_LATER: dict[str, Any] = {
    "train.optimizer": "adamw",
    "train.device": "cpu",
    "train.precision": "fp32",
    "model.qk_clip": 0.0,
    "model.attention_softcap": 0.0,
    "model.final_logit_softcap": 0.0,
}
#: Environment fields whose change is worth a warning (numbers may move within tolerance).
#: ``device_name``, ``precision`` and ``reproducibility`` came later: a baseline without them is not warned about.
ENVIRONMENT_KEYS = ("trainstab", "torch", "python", "cpu", "device_name", "precision", "reproducibility", "seed")
Value = float | bool | None
PerLr = dict[str, Value]


def lr_key(lr: float) -> str:
    """How an LR is written as a JSON key ("0.0003")."""
    return f"{lr:g}"


#: The longest folder name a label keeps whole. File systems allow 255 bytes; a longer label (a model with many
#: options) keeps its first characters and gains a digest of the whole label, so two long labels never share a
#: folder. Names up to this length are unchanged, so every baseline already written stays where it is.
LONGEST_FILE_NAME = 200


def file_name(label: str) -> str:
    """A model label as a folder name: anything but letters, digits and ``._=+-`` becomes ``_``.

    A name longer than :data:`LONGEST_FILE_NAME` is cut and ends in a digest of the label.
    """
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", label).strip("_.") or "model"  # no "..": never outside the folder
    if len(name) <= LONGEST_FILE_NAME:
        return name
    digest = hashlib.sha256(label.encode()).hexdigest()[:16]
    return f"{name[: LONGEST_FILE_NAME - len(digest) - 1]}-{digest}"


def baseline_path(folder: Path, label: str, check: str) -> Path:
    """Where the baseline of ``check`` on the model labelled ``label`` lives."""
    return folder / file_name(label) / f"{check}.json"


def obtained_path(path: Path) -> Path:
    """Where a mismatching run's metrics are written beside the baseline (never committed)."""
    return path.with_name(path.stem + ".obtained.json")


def _round(value: float) -> float | None:
    """``value`` to SIGNIFICANT_DIGITS (None when not finite: JSON has no NaN)."""
    if not math.isfinite(value):
        return None
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def metrics_of(check: str) -> tuple[Metric, ...]:
    """The metrics the check ``check`` records in its baseline (built in or a team's own), in the file's order."""
    return registry.check(check).metrics


def known_metrics() -> dict[str, Metric]:
    """Every metric any registered check records, by name: a baseline file is read against these."""
    return {metric.name: metric for check in registry.all_checks().values() for metric in check.metrics}


def _recorded(metric: Metric, value: Any) -> Any:
    """``value`` as the file records it: numbers to SIGNIFICANT_DIGITS and null when not finite."""
    if metric.kind == "number" and metric.rounded:
        return None if value is None else _round(float(value))
    if metric.kind == "list":
        return [None if item is None else _round(float(item)) for item in value]
    return value


def measure(sweep: SweepResult, check: str, thresholds: Thresholds) -> dict[str, Any]:
    """The metrics ``check`` records for a sweep, rounded, per LR where they are per run."""
    metrics: dict[str, Any] = {}
    for metric in metrics_of(check):
        if metric.per_lr:
            metrics[metric.name] = {
                lr_key(run.lr): _recorded(metric, metric.measure(run, sweep, thresholds)) for run in sweep.runs
            }
        else:
            metrics[metric.name] = _recorded(metric, metric.measure(sweep, thresholds))
    return metrics


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"train.steps": 200, ...}``: one line per setting in a diff."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def describe_config(sweep: SweepResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """(protocol, recipe) of a sweep: what defines the measurement, and everything else."""
    flat = flatten(resolved_config(sweep.config))
    corpus = Path(flat["corpus"])
    # The path differs between machines; the name and size identify the corpus.
    flat["corpus"] = f"{corpus.name} ({corpus.stat().st_size} bytes)" if corpus.exists() else corpus.name
    for machine_specific in ("workers", "executor", "stack_size", "train.seed"):
        flat.pop(machine_specific, None)
    flat["train.device"] = flat["train.device"].split(":")[0]  # cuda:1 measures what cuda:0 does
    if sweep.config.model_name != "reference":  # another model's architecture is its code, not these keys
        for key in REFERENCE_ONLY_KEYS:
            flat.pop(f"model.{key}", None)
    # ...and the keyword options it is built with: one recipe line each, so a diff names the switch that moved.
    flat["model_name"], model_options = split_model_name(sweep.config.model_name)
    flat.update({f"model.options.{key}": value for key, value in model_options.items()})
    for key, value in flat.items():  # JSON has no inf (e.g. --set grad_clip=inf): written as text
        if isinstance(value, float) and not math.isfinite(value):
            flat[key] = str(value)
    protocol = {key: flat.pop(key) for key in PROTOCOL_KEYS if key in flat}
    return protocol, flat


def new_baseline(
    label: str,
    check: str,
    sweep: SweepResult,
    thresholds: Thresholds,
    tolerances: dict[str, Tolerance] | None = None,
) -> dict[str, Any]:
    """The baseline file's content for ``check`` on this sweep.

    ``tolerances`` (for instance those a team edited into the file being replaced) win over the defaults.
    """
    protocol, recipe = describe_config(sweep)
    metrics = measure(sweep, check, thresholds)
    chosen = {**gated_tolerances(), **(tolerances or {})}
    return {
        "trainstab_baseline": FORMAT_VERSION,
        "model": label,
        "check": check,
        "max_lr": thresholds.max_lr,
        "environment": {key: sweep.environment.get(key) for key in ENVIRONMENT_KEYS},
        "protocol": protocol,
        "recipe": recipe,
        "tolerances": {
            name: {"rel": chosen[name].rel, "abs": chosen[name].abs, "worse": chosen[name].worse}
            for name in metrics
            if name in chosen
        },
        "metrics": metrics,
    }


def to_text(baseline: dict[str, Any]) -> str:
    """The file's text: indented, keys in a stable order, one value per line, so diffs read well."""
    return json_text(baseline)


@dataclass(frozen=True)
class Baseline:
    """A baseline file, read and validated."""

    path: Path
    data: dict[str, Any]
    text: str = ""  # the file's text as read and validated (a rewrite is decided on it, never on a second read)

    @property
    def tolerances(self) -> dict[str, Tolerance]:
        """The file's tolerances (a team may loosen one for one model by editing it); defaults for the rest.

        Only the size comes from the file: which direction is worse is the metric's definition, so an edit can
        widen a tolerance but never turn a regression into an improvement.
        """
        defaults = gated_tolerances()
        edited = {
            name: Tolerance(t["rel"], t["abs"], defaults[name].worse) for name, t in self.data["tolerances"].items()
        }
        return {**defaults, **edited}

    def team_fields(self) -> dict[str, Any]:
        """The top-level keys a team added that the format does not have ("notes"), to keep through a rewrite."""
        return {key: value for key, value in self.data.items() if key not in FIELDS}


class BaselineError(TrainstabError):
    """A baseline file that cannot be used (unreadable, not JSON, or edited into another shape)."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(
            f"baseline {shown(path)}: {problem}. It was left untouched: fix it by hand, restore it "
            f"(git checkout -- {shown(path)}), or delete it to record a new one on the next run"
        )


def read_baseline(path: Path, check: str, label: str | None = None) -> Baseline | None:
    """The baseline of ``check`` (on the model ``label``, when given) at ``path``; None if there is none.

    The file is untrusted input (anyone's pull request, or a merge, may have edited it): it is read by
    :func:`trainstab.core.untrusted.read_json_file` (a regular file under :data:`MAX_BYTES`, strict JSON with no key
    twice) and then checked field by field. Raises :class:`BaselineError` naming the file and what is wrong.
    """
    if not path.exists():  # nothing there (or a file where the model's folder should be: the write reports it)
        return None
    try:
        text = read_text_file(path, MAX_BYTES)
        data = parse_json(text)
    except FileNotFoundError:  # removed since
        return None
    except UntrustedFileError as error:  # a pipe, a device, too big, not JSON, a duplicated key, a 400-digit number
        raise BaselineError(path, str(error)) from None
    _validate(path, data, check, label)
    return Baseline(path, data, text)


def _quoted(text: str) -> str:
    """A name taken from a file, quoted and escaped for a one-line message (a key may hold a newline)."""
    return json.dumps(text)


def printable(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """``value`` as text on one line: control characters (a newline a file smuggled in) written as escapes,
    and cut at ``limit`` characters, so that a value read from a file cannot print lines of its own."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _environment_problem(environment: dict[str, Any]) -> str | None:
    """Why a recorded environment is not an object of strings, numbers and nulls (None when it is one)."""
    for key, value in environment.items():
        if not (value is None or isinstance(value, str) or _is_number(value)):
            shown_value = printable(json.dumps(value), 40)
            return f'"environment" field {_quoted(key)} is {shown_value}, not a string, number or null'
    return None


def _validate(path: Path, data: Any, check: str, label: str | None) -> None:
    """Raise :class:`BaselineError` if ``data`` is not a baseline of ``check`` in this format, field by field.

    What a team may edit: a tolerance's ``rel`` and ``abs`` (finite, from 0 to :data:`MAX_TOLERANCE`), and keys
    of its own at the top level. Everything else is what a run measured; a tolerance's ``worse`` must say what
    the metric's definition says, so that an edit can loosen the gate but never point it the other way.
    """
    if not isinstance(data, dict):
        raise BaselineError(path, f"holds a JSON {type(data).__name__}, not an object")
    version = data.get("trainstab_baseline")
    if not (type(version) is int and version == FORMAT_VERSION):  # true and 1.0 equal 1 in Python, not here
        raise BaselineError(
            path, f'"trainstab_baseline" is {printable(json.dumps(version), 40)}; this trainstab reads {FORMAT_VERSION}'
        )
    for key, kind in (("protocol", dict), ("recipe", dict), ("tolerances", dict), ("metrics", dict)):
        if not isinstance(data.get(key), kind):
            raise BaselineError(path, f'"{key}" is missing or not an object')
    environment = data.get("environment", {})
    if not isinstance(environment, dict):
        raise BaselineError(path, '"environment" is not an object')
    problem = _environment_problem(environment)
    if problem is not None:
        raise BaselineError(path, problem)
    if data.get("check") != check:
        raise BaselineError(
            path, f'"check" is {printable(repr(data.get("check")), 40)} but the file is the baseline of {check!r}'
        )
    if not (isinstance(data.get("model"), str) and data["model"]):
        raise BaselineError(path, '"model" is missing or not a model label (a string)')
    if label is not None and data["model"] != label:
        raise BaselineError(
            path,
            f'"model" is {printable(repr(data["model"]))} but this is the baseline of {label!r}: two model labels map '
            "to one file; give one of them another id",
        )
    if not _is_number(data.get("max_lr")):
        raise BaselineError(path, '"max_lr" is missing or not a number')
    recorded = [metric.name for metric in metrics_of(check)]
    for name in recorded:
        if name not in data["metrics"]:
            raise BaselineError(path, f'"metrics" has no "{name}", which check {check} compares')
    lrs = data["protocol"].get("lrs")
    if not (isinstance(lrs, list) and lrs and all(_is_number(x) for x in lrs)):
        raise BaselineError(path, '"protocol" has no "lrs" list of numbers')
    for name, value in data["metrics"].items():
        if name not in recorded:
            raise BaselineError(path, f'"metrics" has {_quoted(name)}, which check {check} does not record')
        _validate_metric(path, name, value, {lr_key(x) for x in lrs})
    for name, tolerance in data["tolerances"].items():
        _validate_tolerance(path, name, tolerance)


def _validate_tolerance(path: Path, name: str, tolerance: Any) -> None:
    """One entry of ``"tolerances"``: ``{"rel": r, "abs": a, "worse": w}`` with w the metric's own direction."""
    gated = gated_tolerances()
    if name not in gated:
        raise BaselineError(path, f'"tolerances" names {_quoted(name)}, which is not a gated metric')
    if not (
        isinstance(tolerance, dict)
        and set(tolerance) == {"rel", "abs", "worse"}
        and all(_is_number(tolerance[k]) and 0 <= tolerance[k] <= MAX_TOLERANCE for k in ("rel", "abs"))
        and tolerance["worse"] in ("higher", "lower")
    ):
        raise BaselineError(
            path,
            f'tolerance of "{name}" must be {{"rel": number from 0 to {MAX_TOLERANCE:g}, "abs": number from 0 to '
            f'{MAX_TOLERANCE:g}, "worse": "higher" or "lower"}}, not {printable(json.dumps(tolerance), 100)}',
        )
    defined = gated[name].worse
    if tolerance["worse"] != defined:
        # Obeying the file would let a pull request that flips one word pass any regression of this metric.
        raise BaselineError(
            path,
            f'tolerance of "{name}" has "worse": "{tolerance["worse"]}", but {defined} {name} is worse by the '
            f'check\'s definition; a baseline may widen a tolerance, never turn its direction (write "worse": '
            f'"{defined}")',
        )


def _is_number(value: Any) -> bool:
    """A finite JSON number (bools are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _validate_metric(path: Path, name: str, value: Any, lrs: set[str]) -> None:
    """A per-LR metric is ``{"0.01": entry}`` over exactly the protocol's LRs; any other is a number or null."""
    metric = known_metrics()[name]
    kind = metric.kind if metric.per_lr else None
    if metric.kind == "count":  # a count is always measured: null would switch its comparison off
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise BaselineError(
                path, f'metric "{name}" must be a whole number >= 0, not {printable(json.dumps(value), 60)}'
            )
        return
    if kind is None:
        if not (value is None or _is_number(value)):
            raise BaselineError(
                path, f'metric "{name}" must be a number or null, not {printable(json.dumps(value), 60)}'
            )
        return
    if not isinstance(value, dict):
        raise BaselineError(
            path, f'metric "{name}" must be an object keyed by LR, not {printable(json.dumps(value), 60)}'
        )
    for lr, entry in value.items():
        try:
            float(lr)
        except ValueError:
            raise BaselineError(path, f'metric "{name}" has key {lr!r}, which is not a learning rate') from None
        ok = {
            "number": entry is None or _is_number(entry),
            "bool": isinstance(entry, bool),
            "list": isinstance(entry, list) and all(x is None or _is_number(x) for x in entry),
        }[kind]
        if not ok:
            expected = {"number": "a number or null", "bool": "true or false", "list": "a list of numbers"}[kind]
            raise BaselineError(
                path, f'metric "{name}" at LR {printable(lr, 40)} is {printable(json.dumps(entry), 60)}, not {expected}'
            )
    if set(value) != lrs:
        raise BaselineError(
            path, f'metric "{name}" has LRs {sorted(value, key=float)}, but "protocol" lists {sorted(lrs, key=float)}'
        )


@dataclass(frozen=True)
class Comparison:
    """One gated number: baseline vs measured under a tolerance."""

    metric: str
    lr: str | None  # the LR key for per-LR metrics
    baseline: float | None
    measured: float | None
    tolerance: Tolerance
    worse: bool

    def describe(self) -> str:
        """``max_attention_logit at lr=0.3: baseline 36.1, measured 6.99e+04, allowed up to 59.15 (...)``."""
        where = f" at lr={self.lr}" if self.lr is not None else ""
        t = self.tolerance
        if self.baseline is None:
            limit = "no limit (the baseline has no value)"
        else:
            sign = 1 if t.worse == "higher" else -1
            bound = self.baseline + sign * t.allowed(self.baseline)
            limit = f"{'up to' if sign > 0 else 'down to'} {bound:.4g} (tolerance rel {t.rel:g} + abs {t.abs:g})"
        measured = "not measured (diverged)" if self.measured is None else f"{self.measured:.4g}"
        return f"{self.metric}{where}: baseline {_show(self.baseline)}, measured {measured}, allowed {limit}"


def _show(value: float | None) -> str:
    """A number for a message (``-`` for none)."""
    return "-" if value is None else f"{value:.4g}"


def _as_float(value: Value) -> float | None:
    """A metric entry as a float (bools as 0/1; None stays None)."""
    return None if value is None else float(value)


def compare(baseline: Baseline, current: dict[str, Any]) -> list[Comparison]:
    """Every gated number of ``current`` (a :func:`new_baseline`) against ``baseline``.

    Per-LR metrics are compared at the LRs up to the baseline's ``max_lr``
    (the ones the check itself looks at). A value that became unmeasurable
    (null: the run diverged) where the baseline had one is worse.
    """
    tolerances = baseline.tolerances
    max_lr = float(baseline.data["max_lr"])
    rows: list[Comparison] = []
    for name, measured in current["metrics"].items():
        if name not in tolerances:  # informational metrics (no tolerance) are recorded, never gated
            continue
        recorded = baseline.data["metrics"][name]
        pairs: list[tuple[str | None, Value, Value]]
        if isinstance(measured, dict):
            checked = {lr: value for lr, value in measured.items() if up_to(float(lr), max_lr)}
            pairs = [(lr, recorded.get(lr), value) for lr, value in checked.items()]
        else:
            pairs = [(None, recorded, measured)]
        for lr, old, new in pairs:
            b, m, t = _as_float(old), _as_float(new), tolerances[name]
            if b is None:
                worse = False  # nothing to hold it to
            elif m is None:
                worse = True
            else:
                worse = (m - b if t.worse == "higher" else b - m) > t.allowed(b) * (1 + 1e-9)
            rows.append(Comparison(name, lr, b, m, t, worse))
    return rows


def protocol_changes(baseline: Baseline, current: dict[str, Any]) -> list[str]:
    """Protocol settings that differ (each ``key: baseline X, this run Y``): the baseline is not comparable."""
    return _differences(baseline.data["protocol"], current["protocol"]) + (
        [f"max_lr: baseline {baseline.data['max_lr']:g}, this run {current['max_lr']:g}"]
        if not math.isclose(baseline.data["max_lr"], current["max_lr"])
        else []
    )


def recipe_changes(baseline: Baseline, current: dict[str, Any]) -> list[str]:
    """Recipe settings (architecture, optimizer) that differ: context for a regression message.

    A setting this run no longer records (the reference's architecture keys, once recorded for a user
    model too) is not a change the user made, and is left out.
    """
    recorded = {
        key: value
        for key, value in baseline.data["recipe"].items()
        if key in current["recipe"] or key.startswith("model.options.")  # a dropped option is a change
    }
    return _differences(recorded, current["recipe"])


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: baseline X, this run Y`` for each key whose value differs (a key added later: its old value)."""
    return [
        # The key may come from the file: escaped, so a newline in it cannot print a line of its own.
        f"{printable(key)}: baseline {json.dumps(old.get(key, ADDED_LATER.get(key)))}, "
        f"this run {json.dumps(new.get(key))}"
        for key in sorted(set(old) | set(new))
        if old.get(key, ADDED_LATER.get(key)) != new.get(key, ADDED_LATER.get(key))
    ]


def environment_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Environment fields (versions, CPU, seed) that differ between a baseline and this run.

    Each value is :func:`printable`: a recorded one comes from a file, and must not print a line of its own.
    """
    return [
        f"{key} {printable(recorded.get(key))} -> {printable(current.get(key))}"
        for key in ENVIRONMENT_KEYS
        if key in current and key in recorded and recorded.get(key) != current.get(key)
    ]


def recorded_environments(folder: Path) -> dict[Path, dict[str, Any]]:
    """The environment recorded in each usable baseline under ``folder``.

    Read as :func:`read_baseline` reads (the header runs before anything trains, and a named pipe or a file
    nested 100,000 deep must neither hang nor crash it). A file that cannot be read, or whose environment is
    not an object of strings, numbers and nulls, is skipped: the check that reads it reports it.
    """
    found: dict[Path, dict[str, Any]] = {}
    for path in sorted(folder.glob("*/*.json")):
        if path.name.endswith(".obtained.json"):
            continue
        try:
            data = read_json_file(path, MAX_BYTES)
        except (OSError, UntrustedFileError):  # FileNotFoundError too: removed since the folder was listed
            continue
        environment = data.get("environment") if isinstance(data, dict) else None
        if isinstance(environment, dict) and _environment_problem(environment) is None:
            found[path] = environment
    return found


def header_lines(options: RunOptions) -> list[str]:
    """Lines for the top of a run: the baseline folder, and a warning when its baselines were recorded elsewhere."""
    if options.baselines is None:
        return []
    folder = Path(options.baselines)
    environments = recorded_environments(folder)
    mode = " (rewriting all)" if options.regen_all else " (rewriting failing ones)" if options.update_baseline else ""
    lines = [f"baselines {shown(folder)}: {len(environments)} file(s){mode}"]
    here = light_environment(run_seed(options))
    differences = sorted({d for recorded in environments.values() for d in environment_differences(recorded, here)})
    if differences:
        lines.append(
            "WARNING: baselines were recorded in another environment (" + "; ".join(differences) + "): numbers "
            f"may move within tolerance; if they drift, refresh the baselines on main with {options.flag('regen-all')}"
        )
    return lines
