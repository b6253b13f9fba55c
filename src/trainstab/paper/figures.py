"""One PNG per finding, in the paper's style.

Loss against LR on a log LR axis, one curve per setting; max attention logit
and gradient RMS on log axes against LR or parameters, with the level that
matters drawn as a dashed line; log Z over steps. matplotlib is imported
lazily (Agg backend) so the library never needs a display.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainstab.checks.forecast import Forecast
from trainstab.checks.scaling import optimal_lr
from trainstab.core.ladder import LadderResult
from trainstab.core.plotting import label_axes as _label
from trainstab.core.results import ATTENTION_DIVERGENCE_LEVEL, LOG_Z_MEAN, STEP, SweepResult
from trainstab.paper.findings import FindingResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _loss_vs_lr(ax: Axes, sweeps: dict[str, SweepResult], title: str = "Final loss vs learning rate") -> None:
    """Final loss (capped at the initial loss, as LR sensitivity counts it) against LR, one curve per sweep."""
    for label, sweep in sweeps.items():
        lrs = [run.lr for run in sweep.runs]
        losses = [run.capped_loss() for run in sweep.runs]
        ax.plot(lrs, losses, marker="o", label=f"{label} (LR sens. {sweep.lr_sensitivity:.3f})")
    _label(ax, "learning rate (peak)", "final train loss (nats)", title)


def _attention_vs_lr(ax: Axes, sweeps: dict[str, SweepResult]) -> None:
    """Max attention logit against LR, log-log, with the paper's divergence level."""
    for label, sweep in sweeps.items():
        ax.plot([r.lr for r in sweep.runs], [r.max_attention_logit for r in sweep.runs], marker="o", label=label)
    ax.axhline(ATTENTION_DIVERGENCE_LEVEL, color="k", linestyle="--", linewidth=1, label="1e4 (paper: runs diverged)")
    _label(ax, "learning rate (peak)", "max attention logit", "Max attention logit vs learning rate", logy=True)


def _log_z_over_steps(ax: Axes, sweeps: dict[str, SweepResult]) -> None:
    """Mean log Z over training, one line per (setting, LR)."""
    styles = ["-", "--", ":", "-."]
    for colour, (label, sweep) in enumerate(sweeps.items()):
        for i, run in enumerate(sweep.runs):
            steps = [h[STEP] for h in run.history]
            ax.plot(
                steps,
                [h[LOG_Z_MEAN] for h in run.history],
                color=f"C{colour}",
                linestyle=styles[i % len(styles)],
                label=f"{label}, lr={run.lr:g}",
            )
    ax.axhline(0.0, color="k", linewidth=0.8)
    title = "log Z over training (no weight decay)"
    _label(ax, "step", "mean log Z of the output logits", title, logx=None, legend=7, ncol=2)


def _sensitivity_bars(ax: Axes, sweeps: dict[str, SweepResult]) -> None:
    """LR sensitivity per setting."""
    labels = list(sweeps)
    ax.bar(range(len(labels)), [sweeps[label].lr_sensitivity for label in labels], color="C0")
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.set_ylabel("LR sensitivity (nats)")
    ax.set_title("LR sensitivity per setting")
    ax.grid(True, axis="y", alpha=0.3)


def _ladder_loss_panels(axes: Any, ladders: dict[str, LadderResult]) -> None:
    """Loss vs LR per width, one panel per parameterization."""
    for ax, (label, ladder) in zip(axes, ladders.items(), strict=False):
        _loss_vs_lr(ax, {r.label: r.sweep for r in ladder.rungs}, title=f"{label}: loss vs LR per width")


def _optimum_vs_width(ax: Axes, ladders: dict[str, LadderResult]) -> None:
    """Interpolated optimal LR against width, log-log."""
    for label, ladder in ladders.items():
        widths = [r.sweep.config.model.width for r in ladder.rungs]
        ax.plot(widths, [optimal_lr(r.sweep) for r in ladder.rungs], marker="o", label=label)
    _label(ax, "width (d_model)", "optimal learning rate (interpolated)", "Optimal LR vs width", logy=True)


def _forecast_panel(ax: Axes, ladder: LadderResult, forecast: Forecast, title: str, ylabel: str) -> None:
    """Measured values per LR against parameters, the fit extrapolated to the target, and the level."""
    parameters = ladder.parameters
    span = np.logspace(math.log10(min(parameters)), math.log10(forecast.forecast_parameters), 50)
    for i, f in enumerate(forecast.per_lr):
        ax.plot(parameters, f.measured, marker="o", linestyle="none", color=f"C{i}", label=f"lr={f.lr:g}")
        if f.fit is not None:
            ax.plot(span, [f.fit.predict(n) for n in span], color=f"C{i}", linestyle="--", linewidth=1)
    ax.axhline(forecast.level, color="k", linestyle=":", linewidth=1.2, label=f"level {forecast.level:g}")
    ax.axvline(forecast.target_parameters, color="grey", linewidth=1, label="target size")
    if forecast.forecast_parameters < forecast.target_parameters:
        ax.axvline(forecast.forecast_parameters, color="grey", linestyle="--", linewidth=1, label="extrapolation cap")
    _label(ax, "non-embedding parameters", ylabel, title, logy=True, legend=7, ncol=2)


def _sensitivity_vs_size(ax: Axes, ladders: dict[str, LadderResult]) -> None:
    """LR sensitivity against parameters for the width and depth ladders."""
    for axis, ladder in ladders.items():
        sizes = ", ".join(r.label for r in ladder.rungs)
        sensitivities = [r.sweep.lr_sensitivity for r in ladder.rungs]
        ax.plot(ladder.parameters, sensitivities, marker="o", label=f"scaling {axis} ({sizes})")
    _label(ax, "non-embedding parameters", "LR sensitivity (nats)", "LR sensitivity vs model size")


def _coordinates_panel(ax: Axes, label: str, result: Any) -> None:
    """Activation RMS per layer against width, one line per recorded step."""
    steps = len(result.rms[0])
    # A few steps from init, always including the last one, which the slopes in the title are taken at.
    for step in sorted({*range(0, steps, max(1, steps // 4)), steps - 1}):
        for layer in range(len(result.rms[0][0])):
            ax.plot(
                result.widths,
                [result.rms[w][step][layer] for w in range(len(result.widths))],
                marker="o",
                color=f"C{layer}",
                alpha=0.3 + 0.7 * step / max(1, steps - 1),
                label=f"layer{layer}, step {step}",
            )
    slopes = ", ".join(f"{s:+.2f}" for s in result.slopes)
    _label(ax, "width (d_model)", "block output RMS", f"{label}: slopes {slopes}", 2, logy=True, legend=6, ncol=2)


def draw(result: FindingResult, path: Path) -> Path:
    """Draw ``result``'s figure to ``path`` (PNG) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    left, right = axes
    if result.key in ("qk_layernorm", "qk_clip", "softcap"):
        _loss_vs_lr(left, result.sweeps)
        _attention_vs_lr(right, result.sweeps)
    elif result.key == "z_loss":
        _log_z_over_steps(left, result.sweeps)
        _loss_vs_lr(right, result.sweeps)
    elif result.key == "mup":
        fig.clear()
        axes = fig.subplots(1, 3)
        _ladder_loss_panels(axes[:2], result.ladders)
        _optimum_vs_width(axes[2], result.ladders)
    elif result.key == "coordinates":
        for ax, (label, coordinates) in zip(axes, result.coordinates.items(), strict=True):
            _coordinates_panel(ax, label, coordinates)
    elif result.key == "width_vs_depth":
        _sensitivity_vs_size(left, result.ladders)
        _loss_vs_lr(right, {f"depth {r.label}": r.sweep for r in result.ladders["depth"].rungs})
    elif result.key in ("epsilon", "forecast"):
        ylabel = "gradient RMS (smallest tensor)" if result.key == "epsilon" else "max attention logit"
        for ax, (label, forecast) in zip(axes, result.forecasts.items(), strict=True):
            _forecast_panel(ax, result.ladders[label], forecast, label, ylabel)
    else:  # a training-setup comparison
        _loss_vs_lr(left, result.sweeps)
        _sensitivity_bars(right, result.sweeps)
    fig.suptitle(result.title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
