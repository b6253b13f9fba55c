"""JSON Schemas of the files trainstab writes for others to read: baseline files and the report's JSON.

Both are generated from what defines the files (the checks' :class:`~trainstab.core.results.Metric` rows, the
baseline format's fields, the report's row layout), shipped in the package as ``trainstab/gate/schemas/*.json``
and in the docs; ``tests/gate/test_schemas.py`` holds the shipped files equal to what this module generates and
validates real files against them. A schema describes a file's shape for editors and other tools; the reader in
:mod:`trainstab.gate.baseline` stays the authority on a baseline (it also checks what a schema cannot say: that
each per-LR metric has exactly the protocol's LRs, that numbers are finite).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainstab.checks.battery import BATTERY
from trainstab.core.results import Metric
from trainstab.gate.baseline import FORMAT_VERSION, MAX_TOLERANCE

#: The report JSON's format version (its ``"trainstab_report"`` field); bumped when the layout changes.
REPORT_FORMAT_VERSION = 1
#: Where the generated schemas ship, inside the package.
SCHEMA_FOLDER = Path(__file__).parent / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

_NUMBER_OR_NULL = {"type": ["number", "null"]}
#: How a metric's value is written in a baseline: by its kind, per LR (an object keyed by LR) or once per sweep.
_PER_LR_ENTRY = {
    "number": _NUMBER_OR_NULL,
    "bool": {"type": "boolean"},
    "list": {"type": "array", "items": _NUMBER_OR_NULL},
}


def _metric_schema(metric: Metric) -> dict[str, Any]:
    """The JSON Schema of one metric's value in a baseline's ``"metrics"``."""
    if metric.kind == "count":  # always measured: null would switch its comparison off
        return {"type": "integer", "minimum": 0, "description": "a count, once per sweep"}
    if not metric.per_lr:
        return {**_NUMBER_OR_NULL, "description": "a number once per sweep (null: not finite)"}
    return {
        "type": "object",
        "description": f'a {metric.kind} per LR, keyed by the protocol\'s LRs as written ("0.01")',
        "additionalProperties": _PER_LR_ENTRY[metric.kind],
    }


def _tolerance_schema(metric: Metric) -> dict[str, Any]:
    """A gated metric's tolerance: a team may widen ``rel`` and ``abs``; ``worse`` is the metric's definition."""
    assert metric.tolerance is not None
    bounded = {"type": "number", "minimum": 0, "maximum": MAX_TOLERANCE}
    return {
        "type": "object",
        "required": ["rel", "abs", "worse"],
        "additionalProperties": False,
        "properties": {"rel": bounded, "abs": bounded, "worse": {"const": metric.tolerance.worse}},
    }


#: The tolerance of a metric the battery does not define (a team's registered check): its direction is the team's.
_TEAM_TOLERANCE = {
    "type": "object",
    "required": ["rel", "abs", "worse"],
    "additionalProperties": False,
    "properties": {
        "rel": {"type": "number", "minimum": 0, "maximum": MAX_TOLERANCE},
        "abs": {"type": "number", "minimum": 0, "maximum": MAX_TOLERANCE},
        "worse": {"enum": ["higher", "lower"]},
    },
}


def baseline_schema() -> dict[str, Any]:
    """The JSON Schema of a baseline file of a battery check (format :data:`FORMAT_VERSION`).

    A team's registered check writes the same layout; its ``metrics`` are its own (the schema leaves them open).
    """
    gated = {m.name: m for check in BATTERY.values() for m in check.metrics if m.tolerance is not None}
    per_check = [
        {
            "if": {"properties": {"check": {"const": name}}, "required": ["check"]},
            "then": {
                "properties": {
                    "metrics": {
                        "type": "object",
                        "required": [metric.name for metric in check.metrics],
                        "additionalProperties": False,
                        "properties": {metric.name: _metric_schema(metric) for metric in check.metrics},
                    }
                }
            },
        }
        for name, check in BATTERY.items()
    ]
    return {
        "$schema": DRAFT,
        "$id": f"trainstab-baseline-{FORMAT_VERSION}.schema.json",
        "title": f"trainstab baseline file, format {FORMAT_VERSION}",
        "description": (
            "What one check measured on one model, committed to gate changes against it "
            "(<baselines>/<model label>/<check>.json). A team may widen a tolerance's rel and abs and add keys of "
            "its own at the top level (kept through a rewrite); everything else is what a run measured."
        ),
        "type": "object",
        "required": ["trainstab_baseline", "model", "check", "max_lr", "protocol", "recipe", "tolerances", "metrics"],
        "properties": {
            "trainstab_baseline": {"const": FORMAT_VERSION, "description": "the format version"},
            "model": {"type": "string", "minLength": 1, "description": "the model label the file belongs to"},
            "check": {"type": "string", "description": "the check (a battery check, or a team's registered one)"},
            "max_lr": {"type": "number", "description": "the checks looked at the LRs up to this one"},
            "environment": {
                "type": "object",
                "description": "where it was measured (trainstab, torch, python, cpu, seed): shown, never compared",
                "additionalProperties": {"type": ["string", "number", "null"]},
            },
            "protocol": {
                "type": "object",
                "description": "what the numbers are comparable under: a change here makes the file incomparable",
                "required": ["lrs"],
                "properties": {"lrs": {"type": "array", "minItems": 1, "items": {"type": "number"}}},
            },
            "recipe": {"type": "object", "description": "the model and training settings, shown when they change"},
            "tolerances": {
                "type": "object",
                "description": "per gated metric, how far a run may move before it fails (a team may widen them)",
                "properties": {name: _tolerance_schema(metric) for name, metric in gated.items()},
                "additionalProperties": _TEAM_TOLERANCE,  # a team's registered check gates its own metrics
            },
            "metrics": {"type": "object", "description": "what the check recorded, by metric"},
        },
        "allOf": per_check,
    }


def report_schema() -> dict[str, Any]:
    """The JSON Schema of ``trainstab-report.json`` (format :data:`REPORT_FORMAT_VERSION`)."""
    number_list = {"type": "array", "items": _NUMBER_OR_NULL}
    comparison = {
        "type": "object",
        "required": ["metric", "lr", "baseline", "measured", "rel", "abs", "worse_is", "worse"],
        "properties": {
            "metric": {"type": "string"},
            "lr": {"type": ["string", "null"], "description": "the LR as the baseline writes it; null: once per sweep"},
            "rel": {"type": "number"},
            "abs": {"type": "number"},
            "worse_is": {"enum": ["higher", "lower"]},
            "worse": {"type": "boolean"},
        },
    }
    difference = {
        "type": "object",
        "required": ["statistic", "lr", "base", "head", "difference", "band", "scale", "worse"],
        "properties": {
            "statistic": {"type": "string", "description": "what the check asserts on, e.g. max_attention_logit"},
            "lr": {**_NUMBER_OR_NULL, "description": "null: once per sweep"},
            "base": {**number_list, "description": "per seed, at the base revision (null: no number, diverged)"},
            "head": {**number_list, "description": "per seed, in the working tree"},
            "difference": {**_NUMBER_OR_NULL, "description": "mean(head) - mean(base) in the scale, positive = worse"},
            "band": {**_NUMBER_OR_NULL, "description": "how far the difference may go: the pair's noise"},
            "scale": {"enum": ["linear", "log10"]},
            "worse": {"type": "boolean"},
        },
    }
    against = {
        "type": ["object", "null"],
        "description": "the comparison with the base revision (--against); null when off",
        "required": ["base", "status", "seeds", "why", "differences"],
        "properties": {
            "base": {"type": "string", "description": "the base revision, e.g. main (3f2a9c1d0e4b)"},
            "status": {"enum": ["worse", "within", "not compared"]},
            "seeds": {"type": "array", "items": {"type": "integer"}},
            "why": {"type": "string", "description": "why it was not compared"},
            "differences": {"type": "array", "items": difference},
        },
    }
    row = {
        "type": "object",
        "description": "one verdict: a check on a model",
        "required": [
            "model",
            "check",
            "order",
            "passed",
            "verdict",
            "check_passed",
            "asserted",
            "value",
            "bound",
            "lr",
            "seed",
            "message",
            "baseline",
        ],
        "properties": {
            "model": {"type": "string"},
            "check": {"type": "string"},
            "order": {"type": "integer", "description": "the check's place in the report order"},
            "passed": {"type": "boolean", "description": "whether the test passes (check and baseline)"},
            "verdict": {"enum": ["pass", "FAIL", "warn", "xfail"]},
            "check_passed": {"type": "boolean", "description": "whether the check's value is within its bound"},
            "asserted": {"type": "boolean", "description": "false: a report-only check"},
            "value": _NUMBER_OR_NULL,
            "bound": _NUMBER_OR_NULL,
            "lr": _NUMBER_OR_NULL,
            "seed": {"type": "integer"},
            "message": {"type": "string"},
            "baseline": {
                "type": "object",
                "required": ["status", "file", "message", "recorded", "fails", "comparisons"],
                "properties": {
                    "status": {"type": "string"},
                    "file": {"type": ["string", "null"]},
                    "message": {"type": "string"},
                    "fails": {"type": "boolean"},
                    "comparisons": {"type": "array", "items": comparison},
                },
            },
            "against": against,
        },
    }
    curves = {
        "type": "object",
        "description": "what a model's figure draws",
        "required": ["model", "lrs", "initial_loss", "final_loss", "max_attention_logit", "diverged", "log_z"],
        "properties": {
            "model": {"type": "string"},
            "lrs": {"type": "array", "items": {"type": "number"}},
            "initial_loss": _NUMBER_OR_NULL,
            "final_loss": number_list,
            "max_attention_logit": number_list,
            "diverged": {"type": "array", "items": {"type": "boolean"}},
            "log_z": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["steps", "mean", "max_abs"],
                    "properties": {
                        "steps": {"type": "array", "items": {"type": "integer"}},
                        "mean": number_list,
                        "max_abs": number_list,
                    },
                },
            },
            "lr_sensitivity": _NUMBER_OR_NULL,
            "best_lr": _NUMBER_OR_NULL,
            "baseline": {"type": "object"},
            "against": {
                "type": ["object", "null"],
                "description": "the base revision's losses and attention logits per LR at the run's seed (--against)",
                "properties": {
                    "name": {"type": "string"},
                    "final_loss": number_list,
                    "max_attention_logit": number_list,
                    "diverged": {"type": "array", "items": {"type": "boolean"}},
                },
            },
        },
    }
    return {
        "$schema": DRAFT,
        "$id": f"trainstab-report-{REPORT_FORMAT_VERSION}.schema.json",
        "title": f"trainstab report, format {REPORT_FORMAT_VERSION}",
        "description": "trainstab-report.json: every verdict of a run, and each model's curves",
        "type": "object",
        "required": ["trainstab_report", "seed", "environment", "passed", "checks", "models"],
        "properties": {
            "trainstab_report": {"const": REPORT_FORMAT_VERSION, "description": "the format version"},
            "seed": {"type": ["integer", "null"]},
            "complete": {"type": "boolean", "description": "false: the run was stopped before every test ran"},
            "environment": {"type": "object"},
            "passed": {"type": "boolean", "description": "no verdict is FAIL"},
            "checks": {"type": "array", "items": row, "description": "failures first, then by model and check"},
            "models": {"type": "object", "additionalProperties": curves},
        },
    }


#: The schemas by the file name they ship under.
SCHEMAS = {"baseline.schema.json": baseline_schema, "report.schema.json": report_schema}
