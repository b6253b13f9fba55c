"""Ladders of model sizes: the same sweep at several widths or depths.

The paper's scaling findings (Wortsman et al. 2023) compare sweeps across
sizes: max attention logit and gradient RMS against parameter count, LR
sensitivity as width or depth grows, the optimal LR across widths. A ladder is
the list of sweep configs, one per rung, that differ from a base only in width
or depth.

Widths keep the base's head dimension (heads = width / head_dim), as the paper
scales heads at a fixed d_head, so a width ladder changes one thing at a time.
Sizes are counted in non-embedding parameters, the count the paper plots against.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trainstab.core.config import ModelConfig, SweepConfig
from trainstab.core.errors import TrainstabError
from trainstab.core.results import SweepResult

#: Widths of the default width ladder (depth of the base): small enough for CI. Width 16
#: (one head) sits off the larger widths' trend (see trainstab.checks.forecast), so it is left out.
DEFAULT_WIDTHS: tuple[int, ...] = (32, 48, 64)
#: Depths of the default depth ladder (width of the base).
DEFAULT_DEPTHS: tuple[int, ...] = (1, 2, 4)


@dataclass(frozen=True)
class Rung:
    """One size of a ladder: its sweep and its parameter count."""

    label: str  # e.g. "width=64" or "depth=4"
    parameters: int  # non-embedding parameters of one model at this size
    sweep: SweepResult


@dataclass(frozen=True)
class LadderResult:
    """The sweeps of one ladder, smallest model first."""

    axis: str  # "width" or "depth"
    rungs: tuple[Rung, ...]

    @property
    def parameters(self) -> list[int]:
        """Parameter count per rung."""
        return [rung.parameters for rung in self.rungs]


def width_configs(base: SweepConfig, widths: Sequence[int]) -> list[SweepConfig]:
    """The base sweep at each width, heads scaled to keep the base's head dimension."""
    head_dim = base.model.head_dim
    configs = []
    for width in sorted(set(widths)):
        if width <= 0 or width % head_dim:
            raise TrainstabError(
                f"ladder width {width} is not a positive multiple of the head dimension {head_dim} "
                f"(width {base.model.width} / heads {base.model.heads}); pick widths like "
                f"{', '.join(str(head_dim * k) for k in (1, 2, 3, 4))}"
            )
        model = dataclasses.replace(base.model, width=width, heads=width // head_dim)
        configs.append(dataclasses.replace(base, model=model))
    return configs


def depth_configs(base: SweepConfig, depths: Sequence[int]) -> list[SweepConfig]:
    """The base sweep at each depth."""
    for depth in depths:
        if depth <= 0:
            raise TrainstabError(f"ladder depth {depth} must be a positive integer")
    return [dataclasses.replace(base, model=dataclasses.replace(base.model, depth=d)) for d in sorted(set(depths))]


@functools.cache
def non_embedding_parameters(model_name: str, config: ModelConfig) -> int:
    """Parameters of one model that do not grow with the vocabulary.

    Embedding and unembedding tables are the parameters linear in the
    vocabulary size V, so they are P(2V) - P(V), whatever the model names them
    (a shape test would also catch an MLP whose hidden width happens to equal V).
    The model is built twice, at seed 0: the count does not depend on the seed.
    """
    from trainstab.train.models import build_stack  # builds the model: torch, imported when a ladder is counted

    def count(vocab_size: int) -> int:
        model, _ = build_stack(model_name, dataclasses.replace(config, vocab_size=vocab_size), members=1, seed=0)
        return sum(math.prod(p.shape[1:]) for p in model.parameters())  # shape[0] is the member dimension

    at_v, at_2v = count(config.vocab_size), count(2 * config.vocab_size)
    return 2 * at_v - at_2v


def run_ladder(
    axis: str,
    configs: Sequence[SweepConfig],
    sweeps: Callable[[list[SweepConfig]], list[SweepResult]],
) -> LadderResult:
    """Sweep every rung and count its parameters.

    ``sweeps`` trains the rungs as one batch (``run_sweeps``, or pytest's session cache): on the Ray executor
    every rung's stacks are in flight at once.
    """
    results = sweeps(list(configs))
    rungs = []
    for config, result in zip(configs, results, strict=True):
        size = config.model.width if axis == "width" else config.model.depth
        parameters = non_embedding_parameters(config.model_name, config.model)
        rungs.append(Rung(f"{axis}={size}", parameters, result))
    return LadderResult(axis, tuple(sorted(rungs, key=lambda rung: rung.parameters)))
