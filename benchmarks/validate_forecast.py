"""Validate the attention-logit forecast two decades out: zoo models trained at widths 256 and 512.

    python benchmarks/validate_forecast.py [--widths 256,512] [--models LABEL;LABEL] [--cache DIR] [--no-training]

For a subset of the calibration zoo (4 stable and 5 unstable models from 6
independently written code paths: :data:`VALIDATED`), the default width ladder (32, 48, 64; about
1e5 non-embedding parameters at the top) gives a forecast per LR; the same
model trained at each larger width (256: +1.2 decades, 512: +1.8) gives the
measurement. Printed per model and width: each LR's power-law forecast and
the measured value, the error in decades, and the call (does the max
attention logit pass 1e4 there?) that ``attention_forecast``'s rules make at
that size against the measured call. Then the error distribution (median and
worst, in decades) and the call accuracy per width.

The large-width sweeps take minutes each on 2 cores (width 512: about 8
minutes for a reference sweep, longer for other code paths). Each one is
summarised into ``benchmarks/validation_runs/`` (the numbers compared, per
LR), which is committed: a rerun reads them and trains only what is missing,
so the run is resumable and an interrupted one loses at most one sweep. The
ladders are read from the calibration cache (``.calibration/``, trained
there when missing: about a minute per model).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "benchmarks"))

from calibrate import SUBSET, ZOO, ZooModel, ladder, measure  # noqa: E402

from trainstab.checks.forecast import forecast_attention_logits  # noqa: E402
from trainstab.checks.scaling import ScalingThresholds  # noqa: E402
from trainstab.core.ladder import DEFAULT_WIDTHS, LadderResult, non_embedding_parameters  # noqa: E402
from trainstab.core.results import ATTENTION_DIVERGENCE_LEVEL  # noqa: E402

RUNS = REPOSITORY / "benchmarks" / "validation_runs"
#: The models validated: the calibration subset, and the zoo's post-LN encoder stack, whose forecast sat at the
#: level across seeds (benchmarks/robustness_scaling_native.out.txt) and whose label the 800-step confirmation
#: at the proxy's size does not bear out.
VALIDATED = (*SUBSET, "attention_models:encoder_layers")
#: Errors within this many decades count as a factor of 2.
FACTOR_OF_TWO = math.log10(2)


@dataclass(frozen=True)
class Measured:
    """One LR of one large-width sweep: the numbers the forecast is compared with."""

    lr: float
    max_attention_logit: float  # NaN when the run diverged
    diverged: bool


def summary_path(model: ZooModel, width: int) -> Path:
    """Where the summary of ``model`` at ``width`` is kept: a readable name and a digest of the full label."""
    digest = hashlib.sha256(model.label.encode()).hexdigest()[:8]
    readable = "".join(c if c.isalnum() else "-" for c in model.label)[:40]
    return RUNS / f"{readable}-{digest}-w{width}.json"


def measured_at(model: ZooModel, width: int, cache: Path, train: bool = True) -> tuple[int, list[Measured]]:
    """Parameters and per-LR measurements of ``model`` at ``width``: from its summary, else from the calibration
    cache or trained (unless ``train`` is False: then FileNotFoundError), and summarised."""
    path = summary_path(model, width)
    if path.exists():
        data = json.loads(path.read_text())
        return data["parameters"], [Measured(**run) for run in data["runs"]]
    sweep = measure(model, "default", 0, cache, width=width, cached_only=not train).sweep
    parameters = non_embedding_parameters(sweep.config.model_name, sweep.config.model)
    runs = [Measured(run.lr, math.nan if run.diverged else run.max_attention_logit, run.diverged) for run in sweep.runs]
    data = {
        "model": model.label,
        "width": width,
        "parameters": parameters,
        "torch": torch.__version__,
        "cpu_kernels": f"{torch.backends.cpu.get_cpu_capability()}/{os.environ.get('ATEN_CPU_CAPABILITY', '')}",
        "seconds": round(sweep.elapsed_seconds, 1),
        "runs": [
            {"lr": r.lr, "max_attention_logit": None if r.diverged else r.max_attention_logit, "diverged": r.diverged}
            for r in runs
        ],
    }
    RUNS.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    partial.replace(path)  # atomic: an interrupted run leaves no half-written summary
    return parameters, runs


def power_law(parameters: list[int], values: list[float], at: int) -> float:
    """The least-squares power law through ``values`` (log10 against log10 parameters), evaluated ``at``.

    Not the forecast's own fit, which refuses points that scatter: here every series is fitted, so that the
    power law is judged on every LR with finite values, not only on those the forecast's rules let through.
    """
    slope, intercept = np.polyfit(np.log10(parameters), np.log10(values), 1)
    return float(10 ** (slope * math.log10(at) + intercept))


def crosses(value: float, diverged: bool) -> bool:
    """The measured call: the run diverged or its max attention logit passed the level."""
    return diverged or not value <= ATTENTION_DIVERGENCE_LEVEL


def validate(
    model: ZooModel, ladder_: LadderResult, width: int, cache: Path, t: ScalingThresholds, train: bool
) -> dict:  # type: ignore[type-arg]
    """Print one model's forecasts for ``width`` beside the measurements; return its errors and calls."""
    parameters, runs = measured_at(model, width, cache, train)
    decades = math.log10(parameters / max(ladder_.parameters))
    # The call attention_forecast's rules make at this size (no extrapolation cap: the size is where we measured).
    forecast = forecast_attention_logits(ladder_, parameters, t.attention_logit, t.max_lr, max_decades=math.inf)
    by_lr = {round(f.lr, 12): f for f in forecast.per_lr}
    errors, calls = [], []
    print(f"  width {width} ({parameters:.3g} parameters, {decades:+.2f} decades past the ladder):")
    for run in runs:
        f = by_lr.get(round(run.lr, 12))
        if f is None:
            continue  # above max_lr: the check does not look there
        values = list(f.measured)
        error = math.nan
        if all(math.isfinite(v) and v > 0 for v in values) and math.isfinite(run.max_attention_logit):
            # Every LR with finite values is fitted, whatever the rules say, so the power law itself is judged.
            predicted = power_law(ladder_.parameters, values, parameters)
            error = math.log10(predicted / run.max_attention_logit)
            errors.append(error)
            fitted = f"power law {predicted:9.3g}"
        else:
            fitted = "power law      n/a "
        measured_call, forecast_call = crosses(run.max_attention_logit, run.diverged), f.crosses
        calls.append(measured_call == forecast_call)
        shown = "diverged" if run.diverged else f"{run.max_attention_logit:.3g}"
        print(
            f"    lr={run.lr:<6g} ladder {' '.join(f'{v:.3g}' for v in values):<26} {fitted} measured "
            f"{shown:>9} (error {error:+.2f} dex) | call {'CROSSES' if forecast_call else 'clear':<7} measured "
            f"{'CROSSES' if measured_call else 'clear':<7}{'' if measured_call == forecast_call else '  WRONG'}"
        )
    flagged = any(f.crosses for f in forecast.per_lr)
    reached = any(crosses(run.max_attention_logit, run.diverged) for run in runs if round(run.lr, 12) in by_lr)
    print(f"    model: forecast {'FLAGGED' if flagged else 'clear'}, measured {'crossed' if reached else 'clear'}")
    return {"errors": errors, "calls": calls, "model_call": flagged == reached}


def main() -> None:
    """Forecast each subset model from its ladder, compare at each larger width, print the distribution."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="256,512", help="larger widths to train and compare")
    parser.add_argument("--models", default=";".join(VALIDATED), help="zoo labels, separated by ;")
    parser.add_argument("--cache", type=Path, default=REPOSITORY / ".calibration")
    parser.add_argument(
        "--no-training", action="store_true", help="skip a width neither summarised nor in the calibration cache"
    )
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    chosen = [next(m for m in ZOO if m.label == label) for label in args.models.split(";")]
    t = ScalingThresholds()
    print(f"seed 0, ladder widths {DEFAULT_WIDTHS}, validation widths {widths}, torch {torch.__version__}")
    totals: dict[int, dict[str, list]] = {w: {"errors": [], "calls": [], "models": []} for w in widths}  # type: ignore[type-arg]
    missing = []
    for model in chosen:
        ladder_ = ladder(model, "width", DEFAULT_WIDTHS, 0, args.cache)
        print(f"\n{'stable  ' if model.stable else 'unstable'} {model.label} ({model.code_path})")
        for width in widths:
            try:
                result = validate(model, ladder_, width, args.cache, t, train=not args.no_training)
            except FileNotFoundError:
                missing.append(f"{model.label} at width {width}")
                continue
            totals[width]["errors"] += result["errors"]
            totals[width]["calls"] += result["calls"]
            totals[width]["models"].append(result["model_call"])
    print()
    for width, total in totals.items():
        errors, calls = total["errors"], total["calls"]
        if not calls:
            print(f"width {width}: nothing measured yet")
            continue
        within = sum(abs(e) <= FACTOR_OF_TWO for e in errors)
        models = total["models"]
        print(
            f"width {width}: model calls right {sum(models)} of {len(models)}, LR calls right {sum(calls)} of "
            f"{len(calls)}; power-law error over {len(errors)} "
            f"LR(s) with finite values: median {statistics.median(errors):+.2f} dex, median |error| "
            f"{statistics.median(abs(e) for e in errors):.2f}, worst over {max(errors):+.2f}, worst under "
            f"{min(errors):+.2f}; {within} within a factor of 2"
        )
    if missing:
        print(f"not yet trained ({len(missing)}): " + "; ".join(missing))


if __name__ == "__main__":
    main()
