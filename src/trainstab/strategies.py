"""Hypothesis strategies over hyperparameters and model options, and the stability region they map.

The import path users write; the code lives in :mod:`trainstab.explore.strategies` (docs/architecture.md).
"""

from __future__ import annotations

from trainstab.explore.strategies import (
    POINTS_PER_DECADE,
    FuzzPoint,
    batch_sizes,
    beta2s,
    depths,
    epsilons,
    grad_clips,
    init_scales,
    learning_rates,
    model_options,
    norm_placements,
    optimizers,
    qk_layernorms,
    stability_region,
    warmup_fractions,
    weight_decays,
    widths_and_heads,
    z_losses,
)

__all__ = [
    "POINTS_PER_DECADE",
    "FuzzPoint",
    "batch_sizes",
    "beta2s",
    "depths",
    "epsilons",
    "grad_clips",
    "init_scales",
    "learning_rates",
    "model_options",
    "norm_placements",
    "optimizers",
    "qk_layernorms",
    "stability_region",
    "warmup_fractions",
    "weight_decays",
    "widths_and_heads",
    "z_losses",
]
