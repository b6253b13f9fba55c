"""The gate's report: every verdict and metric as JSON, one figure per model, one self-contained HTML page.

Built from verdicts and plain per-model curves, so the pytest-xdist
controller can write it from what the workers sent, and ``trainstab check``
from what it measured, without torch. The HTML embeds its images, so the
page alone is the whole report when downloaded as a CI artifact.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainstab.core.files import finite_or_none, json_text, write_atomically, write_text_atomically
from trainstab.core.plotting import label_axes
from trainstab.core.results import ATTENTION_DIVERGENCE_LEVEL, LOG_Z_MAX, LOG_Z_MEAN, LOG_Z_MIN, STEP, SweepResult
from trainstab.gate.baseline import file_name, lr_key
from trainstab.gate.schemas import REPORT_FORMAT_VERSION
from trainstab.gate.verdict import Verdict

if TYPE_CHECKING:
    from matplotlib.axes import Axes

JSON_NAME = "trainstab-report.json"
HTML_NAME = "trainstab-report.html"


def model_curves(label: str, sweep: SweepResult, base: tuple[str, SweepResult] | None = None) -> dict[str, Any]:
    """What the model's figure draws: loss and max attention logit per LR, log Z over steps per LR.

    Each LR's log Z series holds the mean and the max |log Z| per probe: the check reads the max at the first
    and the last probe (where training starts and leaves the output logits). ``base``: the base revision's name
    and its sweep at the same seed (``--against``), drawn beside this run's.
    """
    runs = sweep.runs
    against = None
    if base is not None:
        name, base_sweep = base
        against = {
            "name": name,
            "final_loss": [finite_or_none(run.final_loss) for run in base_sweep.runs],
            "max_attention_logit": [finite_or_none(run.max_attention_logit) for run in base_sweep.runs],
            "diverged": [run.diverged for run in base_sweep.runs],
        }
    return {
        "model": label,
        "lrs": [run.lr for run in runs],
        "initial_loss": finite_or_none(runs[0].initial_loss),
        "final_loss": [finite_or_none(run.final_loss) for run in runs],
        "max_attention_logit": [finite_or_none(run.max_attention_logit) for run in runs],
        "diverged": [run.diverged for run in runs],
        "log_z": {
            lr_key(run.lr): {
                "steps": [int(h[STEP]) for h in run.history],
                "mean": [finite_or_none(h[LOG_Z_MEAN]) for h in run.history],
                "max_abs": [finite_or_none(max(abs(h[LOG_Z_MIN]), abs(h[LOG_Z_MAX]))) for h in run.history],
            }
            for run in runs
        },
        "lr_sensitivity": finite_or_none(sweep.lr_sensitivity),
        "best_lr": sweep.best_lr,
        "baseline": {},
        "against": against,
    }


def attach_baselines(curves: dict[str, dict[str, Any]], verdicts: list[Verdict]) -> None:
    """Give each model's curves the baseline metrics its checks read (final loss, attention logits)."""
    for verdict in verdicts:
        recorded = verdict.recorded
        if recorded and verdict.label in curves:
            for metric in ("final_loss", "max_attention_logit"):  # what the panels draw
                if metric in recorded:
                    curves[verdict.label]["baseline"][metric] = recorded[metric]


def _capped(losses: list[float | None], diverged: list[bool], initial: float | None) -> list[float]:
    """Final losses as LR sensitivity counts them: capped at the initial loss, a diverged run at it (NaN: a gap)."""
    if initial is None:
        return _gaps(losses)
    return [initial if d or v is None else min(v, initial) for v, d in zip(losses, diverged, strict=True)]


def _gaps(values: Sequence[float | None]) -> list[float]:
    """None as NaN, which matplotlib draws as a gap."""
    return [math.nan if v is None else v for v in values]


def _loss_panel(ax: Axes, curve: dict[str, Any]) -> None:
    """Final loss vs LR: this run and the baseline on the same axes."""
    lrs, l0 = curve["lrs"], curve["initial_loss"]
    ax.plot(lrs, _capped(curve["final_loss"], curve["diverged"], l0), marker="o", label="this run")
    recorded = curve["baseline"].get("final_loss")
    if recorded:
        # null in the baseline: that run diverged (counted at l0); an LR it does not hold: a gap.
        base = [recorded.get(lr_key(lr), math.nan) for lr in lrs]
        capped = _gaps(_capped(base, [v is None for v in base], l0))
        ax.plot(lrs, capped, marker="s", linestyle="--", color="grey", label="baseline (main)")
    against = curve.get("against")
    if against:
        base_losses = _capped(against["final_loss"], against["diverged"], l0)
        ax.plot(lrs, base_losses, marker="^", linestyle="-.", color="tab:orange", label=f"base: {against['name']}")
    diverged = [lr for lr, d in zip(lrs, curve["diverged"], strict=True) if d]
    if diverged and l0 is not None:
        ax.plot(diverged, [l0] * len(diverged), "rx", markersize=10, label="diverged (counted at l0)")
    label_axes(ax, "learning rate (peak)", "final train loss (nats, capped at l0)", "Loss vs learning rate")


def _attention_panel(ax: Axes, curve: dict[str, Any]) -> None:
    """Max attention logit vs LR (log-log), this run and the baseline, with the paper's divergence level."""
    lrs = curve["lrs"]
    ax.plot(lrs, _gaps(curve["max_attention_logit"]), marker="o", label="this run")
    recorded = curve["baseline"].get("max_attention_logit")
    if recorded:
        baseline = _gaps([recorded.get(lr_key(lr)) for lr in lrs])
        ax.plot(lrs, baseline, marker="s", linestyle="--", color="grey", label="baseline (main)")
    against = curve.get("against")
    if against:
        base_logits = _gaps(against["max_attention_logit"])
        ax.plot(lrs, base_logits, marker="^", linestyle="-.", color="tab:orange", label=f"base: {against['name']}")
    ax.axhline(ATTENTION_DIVERGENCE_LEVEL, color="k", linestyle=":", linewidth=1, label="1e4 (paper: runs diverged)")
    label_axes(ax, "learning rate (peak)", "max attention logit", "Max attention logit vs LR", logy=True)


def _log_z_panel(ax: Axes, curve: dict[str, Any]) -> None:
    """The max |log Z| of the output logits over training, one line per LR (the log_z check reads its two ends)."""
    for lr, series in curve["log_z"].items():
        ax.plot(series["steps"], _gaps(series["max_abs"]), label=f"lr={lr}")
    label_axes(ax, "step", "max |log Z| over the batch", "max |log Z| over steps", logx=None, legend=7, ncol=2)


def draw_model(curve: dict[str, Any]) -> bytes:
    """The model's three panels side by side, as PNG bytes."""
    from matplotlib.figure import Figure  # no pyplot, no global state; imported when a report is drawn, not at start

    figure = Figure(figsize=(15, 4.2), layout="constrained")
    axes = figure.subplots(1, 3)
    _loss_panel(axes[0], curve)
    _attention_panel(axes[1], curve)
    _log_z_panel(axes[2], curve)
    sensitivity = curve["lr_sensitivity"]
    shown = f"{sensitivity:.4f}" if sensitivity is not None else "not measured"
    figure.suptitle(f"{curve['model']}: LR sensitivity {shown}, best LR {curve['best_lr']:g}")
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=80)
    return out.getvalue()


def write_report(
    folder: Path, verdicts: list[Verdict], curves: dict[str, dict[str, Any]], header: dict[str, Any]
) -> list[Path]:
    """Write the JSON, one PNG per model and the HTML page into ``folder``; returns the files written.

    Existing files are kept as ``<name>.previous``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    # Failures first, then by model and the checks' report order.
    rows = sorted((v.to_json() for v in verdicts), key=lambda r: (r["verdict"] != "FAIL", r["model"], r["order"]))
    attach_baselines(curves, verdicts)
    passed = all(r["verdict"] != "FAIL" for r in rows)
    data = {"trainstab_report": REPORT_FORMAT_VERSION, **header, "passed": passed, "checks": rows, "models": curves}
    written = [folder / JSON_NAME]
    write_text_atomically(folder / JSON_NAME, json_text(data))
    images: dict[str, bytes] = {}
    for label, curve in sorted(curves.items()):
        images[label] = draw_model(curve)
        path = folder / f"{file_name(label)}.png"
        write_atomically(path, images[label])
        written.append(path)
    write_text_atomically(folder / HTML_NAME, render_html(data, images))
    written.append(folder / HTML_NAME)
    return written


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
.summary { font-size: 1.1em; margin-bottom: 1em; }
.pass { color: #176f2c; font-weight: bold; } .fail { color: #b00020; font-weight: bold; }
.warn { color: #8a5a00; font-weight: bold; } .xfail { color: #555; font-weight: bold; }
table { border-collapse: collapse; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed { background: #fdecee; }
pre { white-space: pre-wrap; margin: 0; font-size: .85em; max-width: 70em; }
img { max-width: 100%; border: 1px solid #ddd; }
footer { margin-top: 2em; font-size: .8em; color: #666; }
"""


def _cell(value: Any) -> str:
    """A number for a table cell."""
    return "-" if value is None else html.escape(f"{value:.4g}" if isinstance(value, float) else str(value))


def render_html(data: dict[str, Any], images: dict[str, bytes]) -> str:
    """The page: verdict summary, the table (failures first, with their messages), then each model's figure."""
    rows = data["checks"]
    failed = [r for r in rows if r["verdict"] == "FAIL"]  # an xfail is a known-unstable model failing as declared
    warned = sum(r["verdict"] == "warn" for r in rows)
    verdict = (
        f'<span class="fail">FAILED</span>: {len(failed)} of {len(rows)} checks'
        if failed
        else f'<span class="pass">PASSED</span>: all {len(rows)} checks'
    ) + (f' · <span class="warn">{warned} report-only warning(s)</span>' if warned else "")
    if not data.get("complete", True):  # a run stopped early (Ctrl-C, -x, a crash): say so before anything else
        verdict = '<span class="fail">INCOMPLETE</span>: the run was stopped early; only these checks ran · ' + verdict
    body = [
        "<h1>trainstab report</h1>",
        f'<div class="summary">{verdict} · seed {data.get("seed")}</div>',
        "<table><tr><th>model</th><th>check</th><th>verdict</th><th>value</th><th>bound</th>"
        "<th>baseline</th><th>details</th></tr>",
    ]
    for row in rows:
        baseline = row["baseline"]
        details = row["message"]
        if baseline["message"]:
            details += "\n" + baseline["message"]
        body.append(
            f'<tr class="{"failed" if row["verdict"] == "FAIL" else ""}"><td>{html.escape(row["model"])}</td>'
            f"<td>{html.escape(row['check'])}</td>"
            f'<td class="{row["verdict"].lower()}">{row["verdict"]}</td>'
            f'<td class="num">{_cell(row["value"])}</td><td class="num">{_cell(row["bound"])}</td>'
            f"<td>{html.escape(baseline['status'])}</td><td><pre>{html.escape(details)}</pre></td></tr>"
        )
    body.append("</table>")
    for label, png in images.items():
        encoded = base64.b64encode(png).decode("ascii")
        body.append(f"<h2>{html.escape(label)}</h2>")
        body.append(f'<img alt="plots of {html.escape(label)}" src="data:image/png;base64,{encoded}">')
    environment = data.get("environment", {})
    footer = " · ".join(f"{html.escape(str(k))} {html.escape(str(v))}" for k, v in environment.items())
    body.append(f"<footer>{footer}</footer>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>trainstab report</title>'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
