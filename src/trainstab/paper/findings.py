"""The paper's findings (Wortsman et al. 2023) as experiments at proxy scale.

Each finding trains the sweeps it needs through a :class:`Lab` (which trains
every distinct config once, so the many findings that share the default
model share its sweep), measures the numbers the paper's claim is about, and
says whether the paper's direction held. Nothing is forced: a finding that
does not reproduce is reported as such, with its numbers.

A :class:`FindingResult` carries what the figures and the Markdown summary
need; the figures are drawn by :mod:`trainstab.paper.figures`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from trainstab.checks.forecast import Forecast, forecast_attention_logits, forecast_gradient_rms
from trainstab.checks.scaling import ScalingThresholds, lr_drift, optimal_lr, sensitivity_slope
from trainstab.core.config import CoordinateConfig, SweepConfig
from trainstab.core.ladder import LadderResult, depth_configs, run_ladder, width_configs
from trainstab.core.results import (
    ATTENTION_DIVERGENCE_LEVEL,
    LOG_Z_MEAN,
    CoordinateResult,
    SweepResult,
    gradient_rms_floor,
)
from trainstab.run.options import ModelUnderTest, RunOptions, sweep_config
from trainstab.run.overrides import apply_overrides


@dataclass(frozen=True)
class FindingsPlan:
    """The sizes and settings the findings are measured at (``quick`` or full)."""

    steps: int = 200  # training steps per run
    widths: tuple[int, ...] = (32, 48, 64)  # width ladder (forecast, epsilon, µParam, width vs depth)
    depths: tuple[int, ...] = (1, 2, 4)  # depth ladder
    warmups: tuple[float, ...] = (0.02, 0.1, 0.3)  # warm-up fractions compared
    batch_sizes: tuple[int, ...] = (8, 16, 32)  # batch sizes compared
    target_parameters: float = ScalingThresholds.target_parameters  # size the forecasts extrapolate to
    z_loss_steps: int = 1000  # steps of the output-logit runs (the drift is late in training)
    coordinate_widths: tuple[int, ...] = (32, 64, 128, 256)  # µP coordinate check widths


#: ``trainstab reproduce --quick``: about 3 minutes on two cores.
QUICK_PLAN = FindingsPlan(steps=100, z_loss_steps=300, coordinate_widths=(32, 64, 128))
#: ``trainstab reproduce``: the full run.
FULL_PLAN = FindingsPlan(
    widths=(32, 48, 64, 96), depths=(1, 2, 4, 8), warmups=(0.02, 0.05, 0.1, 0.3), batch_sizes=(8, 16, 32, 64)
)


#: The bounds the findings' forecasts use: the scaling checks' defaults.
BOUNDS = ScalingThresholds()


def _train(config: SweepConfig) -> SweepResult:
    """Train one sweep in this process's pool."""
    from trainstab.train.sweep import run_sweep  # training: torch is imported when a finding trains

    return run_sweep(config)


class Lab:
    """Trains sweeps for the findings, each distinct config once."""

    def __init__(
        self,
        base: SweepConfig,
        on_sweep: Callable[[SweepConfig], None] | None = None,
        sweep: Callable[[SweepConfig], SweepResult] | None = None,
    ) -> None:
        self.base = base
        self._sweep = sweep or _train
        self._on_sweep = on_sweep  # told before each sweep that will actually train (progress)
        self._done: dict[str, SweepResult] = {}

    def config(self, *overrides: str) -> SweepConfig:
        """The base config with ``key=value`` overrides."""
        return apply_overrides(self.base, list(overrides))

    def run(self, config: SweepConfig) -> SweepResult:
        """The sweep of ``config``, trained on first request."""
        key = repr(config)
        if key not in self._done:
            if self._on_sweep is not None:
                self._on_sweep(config)
            self._done[key] = self._sweep(config)
        return self._done[key]

    def run_all(self, configs: list[SweepConfig]) -> list[SweepResult]:
        """:meth:`run` of each config, in order."""
        return [self.run(config) for config in configs]

    def sweep(self, *overrides: str) -> SweepResult:
        """The sweep of the base config with ``key=value`` overrides."""
        return self.run(self.config(*overrides))

    def width_ladder(self, widths: tuple[int, ...], *overrides: str) -> LadderResult:
        """The width ladder of the overridden base."""
        return run_ladder("width", width_configs(self.config(*overrides), widths), self.run_all)

    def depth_ladder(self, depths: tuple[int, ...], *overrides: str) -> LadderResult:
        """The depth ladder of the overridden base."""
        return run_ladder("depth", depth_configs(self.config(*overrides), depths), self.run_all)


@dataclass(frozen=True)
class FindingResult:
    """One finding measured: the claim, the numbers, whether the direction held."""

    key: str  # short name, also the PNG's file name
    title: str
    claim: str  # the paper's direction, one sentence
    held: bool | None  # None: the paper makes no directional claim (measured only)
    evidence: str  # one or two sentences with the measured numbers
    numbers: dict[str, float] = field(default_factory=dict)  # the headline numbers, for JSON
    sweeps: dict[str, SweepResult] = field(default_factory=dict)  # label -> sweep (loss vs LR panels)
    ladders: dict[str, LadderResult] = field(default_factory=dict)  # label -> ladder (scaling panels)
    forecasts: dict[str, Forecast] = field(default_factory=dict)
    coordinates: dict[str, CoordinateResult] = field(default_factory=dict)


def _at(sweep: SweepResult, lr: float) -> float:
    """Max attention logit at ``lr`` (NaN if that LR is not on the grid)."""
    return next((r.max_attention_logit for r in sweep.runs if math.isclose(r.lr, lr)), math.nan)


def qk_layernorm(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """Attention logit growth without qk-layernorm, and its effect on LR sensitivity."""
    on, off = lab.sweep("qk_layernorm=true"), lab.sweep("qk_layernorm=false")
    top = max(run.lr for run in on.runs)
    held = on.lr_sensitivity < off.lr_sensitivity and _at(off, top) > ATTENTION_DIVERGENCE_LEVEL and _at(on, top) < 1e3
    return FindingResult(
        key="qk_layernorm",
        title="Attention logit growth and qk-layernorm",
        claim=(
            "Without qk-layernorm attention logits grow past 1e4 at high LR; qk-layernorm keeps them small and "
            "lowers LR sensitivity."
        ),
        held=held,
        evidence=(
            f"max attention logit at lr={top:g}: {_at(off, top):.3g} without, {_at(on, top):.3g} with; "
            f"LR sensitivity {off.lr_sensitivity:.4f} without, {on.lr_sensitivity:.4f} with."
        ),
        numbers={
            "sensitivity_without": off.lr_sensitivity,
            "sensitivity_with": on.lr_sensitivity,
            "max_logit_without": _at(off, top),
            "max_logit_with": _at(on, top),
        },
        sweeps={"no qk-layernorm": off, "qk-layernorm": on},
    )


def z_loss(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """Output logit drift (log Z) without weight decay, with and without z-loss."""
    long = (f"steps={plan.z_loss_steps}", "weight_decay_mode=none")
    lrs = (3e-2, 1e-1, 3e-1)
    sweeps = {
        f"z-loss {c:g}": lab.run(dataclasses.replace(lab.config(*long, f"z_loss={c}"), lrs=lrs)) for c in (0.0, 1e-4)
    }
    without, with_z = sweeps["z-loss 0"], sweeps["z-loss 0.0001"]

    def drift(sweep: SweepResult) -> float:
        """Largest |log Z| at the last probe over the LRs."""
        return max(abs(run.log_z_mean) for run in sweep.runs if not run.diverged)

    initial = without.runs[0].history[0][LOG_Z_MEAN]
    diverged = drift(without) > 2 * abs(initial)
    held = drift(with_z) < drift(without)
    if diverged:
        outcome = "the drift grew: divergence reproduced."
    else:
        outcome = (
            "log Z drifted toward 0, not away: the divergence does not reproduce at proxy scale, and z-loss 1e-4 "
            "only pulls log Z a little closer to 0 in this time."
        )
    return FindingResult(
        key="z_loss",
        title="Output logit divergence and z-loss",
        claim=(
            "Without weight decay log Z drifts far from 0 late in training (output logit divergence); z-loss 1e-4 "
            "keeps it near 0."
        ),
        held=held and diverged,
        evidence=(
            f"{plan.z_loss_steps} steps, no weight decay: |log Z| went from {abs(initial):.2f} at init to "
            f"{drift(without):.2f} without z-loss and {drift(with_z):.2f} with 1e-4; " + outcome
        ),
        numbers={"log_z_initial": initial, "abs_log_z_without": drift(without), "abs_log_z_with": drift(with_z)},
        sweeps=sweeps,
    )


def _compare(
    lab: Lab, key: str, title: str, claim: str, settings: dict[str, str], expect_lower: str | None, higher: str | None
) -> FindingResult:
    """Sweeps of the base under a few settings; claim: ``expect_lower`` is less LR-sensitive than ``higher``."""
    sweeps = {label: lab.sweep(override) for label, override in settings.items()}
    numbers = {f"sensitivity[{label}]": s.lr_sensitivity for label, s in sweeps.items()}
    numbers |= {f"diverged_runs[{label}]": float(sum(r.diverged for r in s.runs)) for label, s in sweeps.items()}
    measured = "; ".join(
        f"{label}: LR sensitivity {s.lr_sensitivity:.4f}, {sum(r.diverged for r in s.runs)} diverged"
        for label, s in sweeps.items()
    )
    held = None
    if expect_lower is not None and higher is not None:
        held = sweeps[expect_lower].lr_sensitivity < sweeps[higher].lr_sensitivity
    return FindingResult(
        key=key, title=title, claim=claim, held=held, evidence=measured + ".", numbers=numbers, sweeps=sweeps
    )


def warmup(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """Warm-up length against LR sensitivity."""
    settings = {f"warm-up {w:g}": f"warmup_fraction={w}" for w in plan.warmups}
    shortest, longest = f"warm-up {min(plan.warmups):g}", f"warm-up {max(plan.warmups):g}"
    return _compare(
        lab,
        key="warmup",
        title="Warm-up length",
        claim="A longer warm-up lowers LR sensitivity.",
        settings=settings,
        expect_lower=longest,
        higher=shortest,
    )


def weight_decay(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """Independent against coupled weight decay."""
    settings = {"independent 1e-4": "weight_decay_mode=independent", "coupled 0.1": "weight_decay_mode=coupled"}
    return _compare(
        lab,
        key="weight_decay",
        title="Independent weight decay",
        claim="Independent weight decay (1e-4) lowers LR sensitivity versus the default coupled form (0.1 x LR).",
        settings=settings,
        expect_lower="independent 1e-4",
        higher="coupled 0.1",
    )


def batch_size(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """Batch size against LR sensitivity and divergence (no directional claim in the paper)."""
    settings = {f"batch {b}": f"batch_size={b}" for b in plan.batch_sizes}
    return _compare(
        lab,
        key="batch_size",
        title="Batch size",
        claim="A training-setup lever (course material): measured, no direction claimed by the paper.",
        settings=settings,
        expect_lower=None,
        higher=None,
    )


def clipping(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """Gradient clipping on and off, on the model without qk-layernorm where it has something to do."""
    settings = {"clip 1.0": "grad_clip=1.0", "no clipping": "grad_clip=0"}
    sweeps = {label: lab.sweep("qk_layernorm=false", override) for label, override in settings.items()}
    held = sweeps["clip 1.0"].lr_sensitivity <= sweeps["no clipping"].lr_sensitivity
    measured = "; ".join(
        f"{label}: LR sensitivity {s.lr_sensitivity:.4f}, max attention logit "
        f"{max(r.max_attention_logit for r in s.runs):.3g}, {sum(r.diverged for r in s.runs)} diverged"
        for label, s in sweeps.items()
    )
    return FindingResult(
        key="clipping",
        title="Gradient clipping (no qk-layernorm)",
        claim="Clipping the global gradient norm at 1 is a stability lever: it should not raise LR sensitivity.",
        held=held,
        evidence=measured + ".",
        numbers={f"sensitivity[{label}]": s.lr_sensitivity for label, s in sweeps.items()},
        sweeps=sweeps,
    )


def mup(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """The optimal LR across widths, standard against µParam (simple)."""
    ladders = {
        "standard": lab.width_ladder(plan.widths, "parameterization=standard"),
        "µParam (simple)": lab.width_ladder(plan.widths, "parameterization=mup_simple"),
    }
    drifts = {label: lr_drift(ladder) for label, ladder in ladders.items()}
    optima = {label: [optimal_lr(r.sweep) for r in ladder.rungs] for label, ladder in ladders.items()}
    span = {label: math.log10(max(o) / min(o)) for label, o in optima.items()}
    held = abs(drifts["µParam (simple)"]) < abs(drifts["standard"]) and span["µParam (simple)"] <= 0.5
    evidence = "; ".join(
        f"{label}: optimal LR {', '.join(f'{o:.3g}' for o in optima[label])} at widths "
        f"{', '.join(str(w) for w in plan.widths)} (drift {drifts[label]:+.2f} decades per decade of width, "
        f"span {span[label]:.2f} decades)"
        for label in ladders
    )
    return FindingResult(
        key="mup",
        title="µParam (simple): the optimal LR across widths",
        claim=(
            "µParam (simple) keeps the optimal LR steady across widths (within one grid step); standard "
            "parameterization lets it drift."
        ),
        held=held,
        evidence=evidence + ".",
        numbers={
            "drift_standard": drifts["standard"],
            "drift_mup": drifts["µParam (simple)"],
            "span_standard": span["standard"],
            "span_mup": span["µParam (simple)"],
        },
        ladders=ladders,
    )


def width_vs_depth(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """LR sensitivity as width grows and as depth grows."""
    ladders = {"width": lab.width_ladder(plan.widths), "depth": lab.depth_ladder(plan.depths)}
    slopes = {axis: sensitivity_slope(ladder) for axis, ladder in ladders.items()}
    held = slopes["depth"] > slopes["width"]
    evidence = "; ".join(
        f"{axis}: "
        + ", ".join(f"{r.label} {r.sweep.lr_sensitivity:.3f}" for r in ladder.rungs)
        + f" (slope {slopes[axis]:+.3f} per decade of parameters)"
        for axis, ladder in ladders.items()
    )
    return FindingResult(
        key="width_vs_depth",
        title="Scaling depth versus width",
        claim="Scaling depth raises LR sensitivity faster than scaling width (per parameter added).",
        held=held,
        evidence=evidence + ".",
        numbers={"slope_width": slopes["width"], "slope_depth": slopes["depth"]},
        ladders=ladders,
    )


def epsilon(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """Gradient RMS against size and LR, and the forecast against eps 1e-8 and 1e-15."""
    ladders = {f"eps {e:g}": lab.width_ladder(plan.widths, f"eps={e}") for e in (1e-8, 1e-15)}
    forecasts = {
        label: forecast_gradient_rms(
            ladder, plan.target_parameters, ratio_to_eps=BOUNDS.grad_rms_over_eps, max_lr=BOUNDS.max_lr
        )
        for label, ladder in ladders.items()
    }
    small = ladders["eps 1e-08"]
    warmup = small.rungs[0].sweep.config.train.warmup_steps
    floors = [[gradient_rms_floor(run, warmup) for run in rung.sweep.runs] for rung in small.rungs]
    smallest = min(min(f) for f in floors)
    falls_with_size = all(a > b for a, b in zip(floors[0][-3:], floors[-1][-3:], strict=True))
    flagged, cleared = bool(forecasts["eps 1e-08"].flagged), not forecasts["eps 1e-15"].flagged
    held = falls_with_size and flagged and cleared
    return FindingResult(
        key="epsilon",
        title="AdamW epsilon and gradient RMS",
        claim=(
            "Gradient RMS falls with model size and LR toward eps=1e-8, where updates shrink; eps=1e-15 removes "
            "the problem."
        ),
        held=held,
        evidence=(
            f"smallest measured gradient RMS {smallest:.3g} = {smallest / 1e-8:.0f}x eps: the proxy itself "
            f"never nears eps; at the three highest LRs it fell from width {small.rungs[0].label} to "
            f"{small.rungs[-1].label}: {falls_with_size}. Forecast at {plan.target_parameters:.3g} parameters: "
            f"{len(forecasts['eps 1e-08'].flagged)} LR(s) within 10x of eps=1e-8, "
            f"{len(forecasts['eps 1e-15'].flagged)} with eps=1e-15."
        ),
        numbers={
            "smallest_grad_rms": smallest,
            "flagged_1e-8": float(len(forecasts["eps 1e-08"].flagged)),
            "flagged_1e-15": float(len(forecasts["eps 1e-15"].flagged)),
        },
        ladders=ladders,
        forecasts=forecasts,
    )


def forecast(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """Forecast of attention logit growth from the width ladder, with and without qk-layernorm."""
    ladders = {
        "no qk-layernorm": lab.width_ladder(plan.widths, "qk_layernorm=false"),
        "qk-layernorm": lab.width_ladder(plan.widths, "qk_layernorm=true"),
    }
    forecasts = {
        label: forecast_attention_logits(ladder, plan.target_parameters, max_lr=BOUNDS.max_lr)
        for label, ladder in ladders.items()
    }
    flagged = {label: [f.lr for f in fc.flagged] for label, fc in forecasts.items()}
    held = bool(flagged["no qk-layernorm"]) and not flagged["qk-layernorm"]
    return FindingResult(
        key="forecast",
        title="Forecasting attention logit growth",
        claim=(
            "Fitting max attention logit against size per LR and extrapolating flags the LRs that will diverge at "
            "the target size; qk-layernorm removes them."
        ),
        held=held,
        evidence=(
            f"at {plan.target_parameters:.3g} parameters, LRs flagged (forecast or measured above 1e4): without "
            f"qk-layernorm {flagged['no qk-layernorm'] or 'none'}; with {flagged['qk-layernorm'] or 'none'}."
        ),
        numbers={
            "flagged_without": float(len(flagged["no qk-layernorm"])),
            "flagged_with": float(len(flagged["qk-layernorm"])),
        },
        ladders=ladders,
        forecasts=forecasts,
    )


def coordinates(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """µP-style coordinate check, standard against µParam (simple)."""
    from trainstab.train.coordinates import coordinate_check  # training: torch

    config = CoordinateConfig(widths=plan.coordinate_widths)
    results = {
        label: coordinate_check(lab.config(f"parameterization={p}"), config)
        for label, p in (("standard", "standard"), ("µParam (simple)", "mup_simple"))
    }
    held = not results["standard"].passed and results["µParam (simple)"].passed
    evidence = "; ".join(
        f"{label}: activation RMS slope vs width per layer {', '.join(f'{s:+.2f}' for s in r.slopes)} "
        f"({'within' if r.passed else 'outside'} +-{r.band:g})"
        for label, r in results.items()
    )
    return FindingResult(
        key="coordinates",
        title="Coordinate check (activation scale across widths)",
        claim=(
            "With µParam activations keep their scale across widths in the first steps; with standard "
            "parameterization they grow with width."
        ),
        held=held,
        evidence=evidence + ".",
        numbers={f"max_slope[{label}]": max(abs(s) for s in r.slopes) for label, r in results.items()},
        coordinates=results,
    )


#: Every finding, in the order of the summary.
def qk_clip(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """Attention logits under AdamW and Muon, without qk-layernorm, with it, and with QK-clip instead."""
    settings = {
        "adamw, no qk-norm": ("optimizer=adamw", "qk_layernorm=false"),
        "muon, no qk-norm": ("optimizer=muon", "qk_layernorm=false"),
        "muon, qk-norm": ("optimizer=muon", "qk_layernorm=true"),
        "muon, QK-clip 100": ("optimizer=muon", "qk_layernorm=false", "qk_clip=100"),
        "adamw, QK-clip 100": ("optimizer=adamw", "qk_layernorm=false", "qk_clip=100"),
    }
    sweeps = {label: lab.sweep(*overrides) for label, overrides in settings.items()}
    top = max(run.lr for run in sweeps["muon, no qk-norm"].runs)
    at_top = {label: _at(sweep, top) for label, sweep in sweeps.items()}
    held = at_top["muon, no qk-norm"] > ATTENTION_DIVERGENCE_LEVEL and at_top["muon, QK-clip 100"] < 1e3
    return FindingResult(
        key="qk_clip",
        title="Attention logits under Muon, and QK-clip",
        claim=(
            "Kimi K2: without qk-layernorm, max attention logits grow under Muon too (here: past 1e4 at the top "
            "LR); QK-clip (rescaling a head's W_q and W_k when its max logit passes 100) keeps them below 1e3."
        ),
        held=held,
        evidence="; ".join(
            f"{label}: max attention logit {at_top[label]:.3g} at lr={top:g}, LR sensitivity {sweep.lr_sensitivity:.4f}"
            for label, sweep in sweeps.items()
        )
        + ".",
        numbers={f"max_attention_logit[{label}]": value for label, value in at_top.items()}
        | {f"sensitivity[{label}]": sweep.lr_sensitivity for label, sweep in sweeps.items()},
        sweeps=sweeps,
    )


def optimizers(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """LR sensitivity per optimizer on the paper's grid (no directional claim: their useful LRs differ)."""
    settings = {name: f"optimizer={name}" for name in ("adamw", "muon", "adafactor", "lion", "sgd")}
    return _compare(
        lab,
        key="optimizers",
        title="LR sensitivity per optimizer",
        claim="Measured, no direction claimed: on AdamW's grid, an optimizer whose useful LRs sit elsewhere "
        "(Lion lower; SGD and Adafactor higher) looks more sensitive than it is.",
        settings=settings,
        expect_lower=None,
        higher=None,
    )


def softcap(lab: Lab, plan: FindingsPlan) -> FindingResult:
    """Soft-capping the attention logits (Gemma 2's 50) on the model without qk-layernorm."""
    settings = {
        "no cap": ("qk_layernorm=false",),
        "attention soft-cap 50": ("qk_layernorm=false", "attention_softcap=50"),
    }
    sweeps = {label: lab.sweep(*overrides) for label, overrides in settings.items()}
    top = max(run.lr for run in sweeps["no cap"].runs)
    capped = _at(sweeps["attention soft-cap 50"], top)
    return FindingResult(
        key="softcap",
        title="Soft-capping attention logits",
        claim="Measured, no direction claimed by the paper: a soft-cap bounds what the softmax sees, not the "
        "logits before it, which the capture records.",
        held=None,
        evidence=f"max attention logit before the cap at lr={top:g}: {_at(sweeps['no cap'], top):.3g} without a "
        f"cap, {capped:.3g} with a cap of 50; LR sensitivity {sweeps['no cap'].lr_sensitivity:.4f} and "
        f"{sweeps['attention soft-cap 50'].lr_sensitivity:.4f}.",
        numbers={f"max_attention_logit[{label}]": _at(sweep, top) for label, sweep in sweeps.items()},
        sweeps=sweeps,
    )


FINDINGS: dict[str, Callable[[Lab, FindingsPlan], FindingResult]] = {
    "qk_layernorm": qk_layernorm,
    "z_loss": z_loss,
    "warmup": warmup,
    "weight_decay": weight_decay,
    "mup": mup,
    "coordinates": coordinates,
    "width_vs_depth": width_vs_depth,
    "epsilon": epsilon,
    "forecast": forecast,
    "batch_size": batch_size,
    "clipping": clipping,
    "qk_clip": qk_clip,
    "optimizers": optimizers,
    "softcap": softcap,
}


#: Findings that flip a switch of the reference model (finding -> the switch). A model of the user's own
#: has its architecture in its code, so these are skipped for it, saying why; the rest vary training
#: keys and sizes, which apply to every model.
REFERENCE_SWITCHES = {
    "qk_layernorm": "qk_layernorm",
    "mup": "parameterization",
    "coordinates": "parameterization",
    "clipping": "qk_layernorm",
    "forecast": "qk_layernorm",
    "qk_clip": "qk_layernorm",
    "softcap": "attention_softcap",
}


def applicable(key: str, model: str) -> str | None:
    """Why finding ``key`` cannot run on ``model`` (None when it can)."""
    if model == "reference" or key not in REFERENCE_SWITCHES:
        return None
    return (
        f"compares the reference's {REFERENCE_SWITCHES[key]} switch on and off, which {model} does not have; "
        "check your own variants as models (e.g. mypkg.models:build[qk_norm=false]) with trainstab check"
    )


def plan_base(plan: FindingsPlan, seed: int, model: str = "reference") -> SweepConfig:
    """The sweep of ``model`` at the plan's step count and the given seed (as ``trainstab sweep`` would run it)."""
    return sweep_config(RunOptions(model=model, seed=seed, steps=plan.steps), ModelUnderTest(model))
