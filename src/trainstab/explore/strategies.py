"""Hypothesis strategies over the hyperparameters that decide training stability.

Every strategy takes bounds, so a project declares its own search space;
inverted or out-of-range bounds raise :class:`TrainstabError` at once. Values
are drawn so that Hypothesis shrinks them toward the *stable* side of each
knob where there is one (lower LR, more warm-up, higher beta2; clipping
shrinks toward off, the simplest setting) and so that a shrunk
counterexample lands next to the stability boundary: the learning rate, for
example, is an index on a log grid (12 points per decade), so shrinking it is
a search for the smallest failing grid point.

``stability_region(...)`` combines them into a :class:`FuzzPoint`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from hypothesis import strategies as st

from trainstab.core.config import ModelConfig, NormPlacement, TrainConfig, WeightDecayMode
from trainstab.core.errors import TrainstabError
from trainstab.core.model_names import canonical_model_name, format_value, join_model_name
from trainstab.core.optimizer_table import choices as optimizer_choices
from trainstab.core.optimizer_table import is_optimizer

POINTS_PER_DECADE = 12  # log-grid resolution of learning rates, eps and z-loss (factor 1.21)


@dataclass(frozen=True)
class FuzzPoint:
    """One point of the hyperparameter space; its repr pastes into ``@example(...)``."""

    lr: float = 1e-2
    warmup_fraction: float = 0.1
    weight_decay_mode: WeightDecayMode = "independent"
    weight_decay: float | None = None
    eps: float = 1e-8
    beta2: float = 0.95
    grad_clip: float = 1.0
    batch_size: int = 16
    width: int = 32
    depth: int = 2
    heads: int = 2
    z_loss: float = 1e-4
    qk_layernorm: bool = True
    norm_placement: NormPlacement = "pre"
    init_scale: float = 1.0
    optimizer: str = "adamw"  # a training key: adamw, muon, adafactor, lion, sgd or package.module:callable
    # A user factory's keyword options (an hf: model's config fields), e.g. {"qk_norm": False}:
    # the model checked is model[qk_norm=false]. Left out of the hash; equality still compares it.
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def overrides(self) -> list[str]:
        """The point as ``key=value`` overrides (everything but the LR and the model's options)."""
        return [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name not in ("lr", "options")]

    def model(self, name: str) -> str:
        """The model this point trains: ``name`` with the point's options (``mypkg.models:build[qk_norm=false]``)."""
        return canonical_model_name(name, self.options)

    def __repr__(self) -> str:
        # Every knob, so the repr alone reproduces the run; options only when there are some, the optimizer
        # only when it is not AdamW (pinned examples written before it was a knob stay as they were).
        shown = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if (f.name != "options" or self.options) and (f.name != "optimizer" or self.optimizer != "adamw")
        ]
        return f"FuzzPoint({', '.join(shown)})"


def _check(name: str, low: float, high: float, floor: float = -math.inf) -> None:
    """Reject inverted or out-of-range bounds with a one-line error."""
    if not (floor <= low <= high) or not math.isfinite(low) or not math.isfinite(high):
        raise TrainstabError(
            f"{name} bounds ({low:g}, {high:g}) are invalid: need {floor:g} <= low <= high, both finite"
        )


def _log_grid(name: str, low: float, high: float) -> st.SearchStrategy[float]:
    """Log-spaced values from ``low`` up to ``high``, shrinking toward ``low``."""
    _check(name, low, high, floor=1e-300)
    count = round(POINTS_PER_DECADE * math.log10(high / low))
    if count == 0:
        return st.just(low)
    return st.integers(0, count).map(lambda i: float(f"{low * (high / low) ** (i / count):.3g}"))


def _linear_grid(
    name: str, low: float, high: float, points: int, toward_high: bool, below_one: bool = False
) -> st.SearchStrategy[float]:
    """``points + 1`` evenly spaced values; shrinking walks from ``high`` down (or ``low`` up)."""
    _check(name, low, high, floor=0.0)
    if below_one and high >= 1:
        raise TrainstabError(f"{name} bound {high:g} must be < 1")
    start, end = (high, low) if toward_high else (low, high)
    return st.integers(0, points).map(lambda i: round(start + (end - start) * i / points, 4))


def learning_rates(low: float = 1e-3, high: float = 1.0) -> st.SearchStrategy[float]:
    """Peak learning rates, log-uniform on a grid; shrink toward ``low`` (the stable side)."""
    return _log_grid("learning rate", low, high)


def warmup_fractions(low: float = 0.0, high: float = 0.5) -> st.SearchStrategy[float]:
    """Share of steps in warm-up; shrinks toward ``high`` (longer warm-up is the stable side)."""
    return _linear_grid("warmup fraction", low, high, points=10, toward_high=True, below_one=True)


def weight_decays(
    modes: tuple[WeightDecayMode, ...] = ("independent", "coupled", "none"),
) -> st.SearchStrategy[WeightDecayMode]:
    """Weight-decay modes, each with its paper default value; shrink toward the first."""
    if not modes or any(m not in ("independent", "coupled", "none") for m in modes):
        raise TrainstabError(f"weight decay modes {modes!r}: choose from independent, coupled, none")
    return st.sampled_from(modes)


def epsilons(low: float = 1e-15, high: float = 1e-6) -> st.SearchStrategy[float]:
    """AdamW epsilon, log-uniform; shrinks toward ``low`` (the paper's fix is 1e-15)."""
    return _log_grid("eps", low, high)


def beta2s(low: float = 0.9, high: float = 0.999) -> st.SearchStrategy[float]:
    """AdamW beta2; shrinks toward ``high``."""
    return _linear_grid("beta2", low, high, points=20, toward_high=True, below_one=True)


def grad_clips(low: float = 0.0, high: float = 1.0) -> st.SearchStrategy[float]:
    """Global-norm clipping threshold (0 disables); shrinks toward ``low``, the simplest setting."""
    return _linear_grid("grad clip", low, high, points=10, toward_high=False)


def batch_sizes(low: int = 4, high: int = 32) -> st.SearchStrategy[int]:
    """Batch sizes (powers of two between the bounds); shrink toward ``high``."""
    _check("batch size", low, high, floor=1)
    sizes = [2**k for k in range(0, 16) if low <= 2**k <= high]
    if not sizes:
        raise TrainstabError(f"no power of two between batch size bounds {low} and {high}")
    return st.sampled_from(sizes[::-1])


def widths_and_heads(
    widths: tuple[int, ...] = (16, 32, 64), heads: tuple[int, ...] = (1, 2, 4)
) -> st.SearchStrategy[tuple[int, int]]:
    """(width, heads) pairs with heads dividing width; shrink toward the first of each."""
    pairs = [(w, h) for w in widths for h in heads if w > 0 and h > 0 and w % h == 0]
    if not pairs:
        raise TrainstabError(f"no width in {widths} divides by a head count in {heads}")
    return st.sampled_from(pairs)


def depths(low: int = 1, high: int = 4) -> st.SearchStrategy[int]:
    """Number of blocks; shrinks toward ``low``."""
    _check("depth", low, high, floor=1)
    return st.integers(int(low), int(high))


def z_losses(low: float = 1e-6, high: float = 1e-2) -> st.SearchStrategy[float]:
    """z-loss coefficient: 0 (off) or log-uniform in the bounds; shrinks toward 0."""
    return st.one_of(st.just(0.0), _log_grid("z-loss", low, high))


def qk_layernorms(options: tuple[bool, ...] = (False, True)) -> st.SearchStrategy[bool]:
    """With or without qk-layernorm; shrinks toward the first option."""
    if not options:
        raise TrainstabError("qk_layernorm options are empty; give (True,), (False,) or both")
    return st.sampled_from(options)


def norm_placements(options: tuple[NormPlacement, ...] = ("pre", "post")) -> st.SearchStrategy[NormPlacement]:
    """Pre-LN or post-LN; shrinks toward the first option."""
    if not options or any(o not in ("pre", "post") for o in options):
        raise TrainstabError(f"norm placements {options!r}: choose from pre, post")
    return st.sampled_from(options)


def init_scales(low: float = 0.5, high: float = 4.0) -> st.SearchStrategy[float]:
    """Multiplier of the init std, log grid; shrinks toward ``low``."""
    return _log_grid("init scale", low, high)


def optimizers(options: tuple[str, ...] = ("adamw",)) -> st.SearchStrategy[str]:
    """Optimizers (built-in names, a team's registered ones or package.module:callable); shrink toward the first.

    Their useful LRs differ (Lion's sit lower than AdamW's): the map shows where each turns unstable.
    """
    if not options:
        raise TrainstabError("optimizer options are empty; give e.g. ('adamw', 'muon')")
    for option in options:
        if not is_optimizer(option):
            raise TrainstabError(f"optimizer {option!r} is unknown; use {optimizer_choices()}")
    return st.sampled_from(options)


def stability_region(
    lr: tuple[float, float] = (1e-3, 0.3),
    qk_layernorm: tuple[bool, ...] = (True,),
    norm_placement: tuple[NormPlacement, ...] = ("pre",),
    warmup_fraction: tuple[float, float] = (0.1, 0.1),
    weight_decay_mode: tuple[WeightDecayMode, ...] = ("independent",),
    widths: tuple[int, ...] = (ModelConfig.width,),
    heads: tuple[int, ...] = (ModelConfig.heads,),
    depth: tuple[int, int] = (ModelConfig.depth, ModelConfig.depth),
    eps: tuple[float, float] = (TrainConfig.eps, TrainConfig.eps),
    z_loss: tuple[float, ...] = (TrainConfig.z_loss,),
    init_scale: tuple[float, float] = (1.0, 1.0),
    beta2: tuple[float, float] = (TrainConfig.beta2, TrainConfig.beta2),
    grad_clip: tuple[float, float] = (TrainConfig.grad_clip, TrainConfig.grad_clip),
    batch_size: tuple[int, int] = (TrainConfig.batch_size, TrainConfig.batch_size),
    options: Mapping[str, st.SearchStrategy[Any] | Sequence[Any]] | None = None,
    optimizer: tuple[str, ...] = (TrainConfig.optimizer,),
) -> st.SearchStrategy[FuzzPoint]:
    """Points of a declared region; by default only the LR varies, up to 0.3.

    Every knob has a value in every point (fixed ones at the reference
    defaults), so a point alone reproduces its run.

    Widen any knob by giving bounds or options, e.g.
    ``stability_region(lr=(1e-3, 1.0), qk_layernorm=(False, True), depth=(1, 4))``.
    ``qk_layernorm``, ``norm_placement`` and ``init_scale`` are the reference's switches. A model of
    your own fuzzes its own switches through ``options``: each of its factory's keyword options maps
    to a strategy or a sequence of values (shrinking toward the first), e.g.
    ``stability_region(options={"qk_norm": (True, False), "init_scale": st.sampled_from([1.0, 3.0])})``.
    """
    return st.builds(
        _point,
        lr=learning_rates(*lr),
        qk_layernorm=qk_layernorms(qk_layernorm),
        norm_placement=norm_placements(norm_placement),
        warmup_fraction=warmup_fractions(*warmup_fraction),
        weight_decay_mode=weight_decays(weight_decay_mode),
        width_heads=widths_and_heads(widths, heads),
        depth=depths(*depth),
        eps=epsilons(*eps),
        z_loss=st.sampled_from(z_loss) if z_loss else st.just(0.0),
        init_scale=init_scales(*init_scale),
        beta2=beta2s(*beta2),
        grad_clip=grad_clips(*grad_clip),
        batch_size=batch_sizes(*batch_size),
        optimizer=optimizers(optimizer),
        options=model_options(options or {}),
    )


def model_options(
    options: Mapping[str, st.SearchStrategy[Any] | Sequence[Any]],
) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts of a model's keyword options: each key's strategy, or its values sampled (shrinking toward the first)."""
    drawn: dict[str, st.SearchStrategy[Any]] = {}
    for key, values in options.items():
        if isinstance(values, st.SearchStrategy):
            drawn[key] = values
        elif isinstance(values, Sequence) and not isinstance(values, str) and len(values) > 0:
            for value in values:  # a value a model name cannot carry fails here, not mid-search
                format_value(value)
            drawn[key] = st.sampled_from(values)
        else:
            raise TrainstabError(
                f"model option {key!r}: give a strategy or a non-empty sequence of values, e.g. (True, False); "
                f"got {values!r}"
            )
    join_model_name("model", dict.fromkeys(drawn))  # every key is a Python name
    return st.fixed_dictionaries(drawn)


def _point(width_heads: tuple[int, int], **values: object) -> FuzzPoint:
    """Assemble a FuzzPoint from drawn values."""
    width, heads = width_heads
    return FuzzPoint(width=width, heads=heads, **values)  # type: ignore[arg-type]
