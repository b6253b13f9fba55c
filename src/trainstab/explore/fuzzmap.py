"""The unstable-region map of ``trainstab fuzz``: JSON and a picture.

The plot has one panel per knob that was explored (LR against width, LR
against warm-up): grey dots for stable points, a coloured marker per cause
for unstable ones, and on the width panel, where both were seen, the largest
stable LR below the first unstable one as a line.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from trainstab.core.files import finite_or_none
from trainstab.explore.fuzz import CAUSES, Outcome

STYLE = {  # cause -> (marker, colour, label)
    None: ("o", "#9e9e9e", "stable"),
    "attention_logits": ("x", "#d62728", "attention logits > bound"),
    "output_logits": ("^", "#9467bd", "|log Z| > bound"),
    "divergence": ("*", "#000000", "diverged (non-finite)"),
    "epsilon": ("s", "#ff7f0e", "gradient RMS near eps"),
}


def lr_boundary(outcomes: list[Outcome], by: str) -> dict[str, dict[str, float | None]]:
    """Per value of ``by`` (a FuzzPoint field): the smallest unstable LR explored and the
    largest stable LR below it. Either is None where the exploration saw none."""
    table: dict[str, dict[str, float | None]] = {}
    for value in sorted({getattr(o.point, by) for o in outcomes}):
        group = [o for o in outcomes if getattr(o.point, by) == value]
        unstable = [o.point.lr for o in group if not o.stable]
        first_unstable = min(unstable, default=math.inf)
        stable = [o.point.lr for o in group if o.stable and o.point.lr < first_unstable]
        table[str(value)] = {
            "max_stable_lr": max(stable) if stable else None,
            "min_unstable_lr": first_unstable if unstable else None,
        }
    return table


def fuzz_to_dict(outcomes: list[Outcome], model: str, seed: int, budget: int, steps: int) -> dict[str, Any]:
    """The map as JSON-ready data."""
    return {
        "model": model,
        "seed": seed,
        "budget": budget,
        "steps_per_example": steps,
        "unstable_by_cause": {c: sum(o.cause == c for o in outcomes) for c in CAUSES},
        "lr_boundary_by_width": lr_boundary(outcomes, "width"),
        "lr_boundary_by_warmup_fraction": lr_boundary(outcomes, "warmup_fraction"),
        "points": [
            finite_or_none(
                {
                    **dataclasses.asdict(o.point),
                    "cause": o.cause,
                    "stable": o.stable,
                    "max_attention_logit": o.max_attention_logit,
                    "max_abs_log_z": o.max_abs_log_z,
                    "min_grad_rms_over_eps": o.min_grad_rms_over_eps,
                    "final_loss": o.final_loss,
                    "diverged": o.diverged,
                }
            )
            for o in outcomes
        ],
    }


def plot_map(outcomes: list[Outcome], path: Path, title: str) -> None:
    """Draw where runs went unstable: LR against width and against warm-up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    for axis, knob, label in ((axes[0], "width", "width (d_model)"), (axes[1], "warmup_fraction", "warm-up fraction")):
        for cause, (marker, colour, name) in STYLE.items():
            points = [o for o in outcomes if o.cause == cause]
            if points:
                axis.scatter(
                    [o.point.lr for o in points],
                    [getattr(o.point, knob) for o in points],
                    marker=marker,
                    c=colour,
                    s=60 if cause else 30,
                    label=f"{name} ({len(points)})",
                )
        # The boundary only where it was bracketed (a stable LR below an unstable one),
        # and only against width: warm-up points mix widths, so a line there would mislead.
        frontier = (
            []
            if knob != "width"
            else [
                (float(k), b["max_stable_lr"])
                for k, b in lr_boundary(outcomes, knob).items()
                if b["max_stable_lr"] is not None and b["min_unstable_lr"] is not None
            ]
        )
        if frontier:
            lrs, widths = [v for _, v in frontier], [k for k, _ in frontier]
            axis.plot(lrs, widths, "--", c="#2ca02c", label="largest stable LR below an unstable one")
        axis.set_xscale("log")
        axis.set_xlabel("peak learning rate")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[1].legend(loc="best", fontsize=8)
    figure.suptitle(title)
    figure.savefig(path, dpi=120)
    plt.close(figure)
