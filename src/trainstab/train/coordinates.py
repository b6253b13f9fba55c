"""The µP-style coordinate check: does activation scale stay put as width grows?

A parameterization transfers across widths when every layer's activations
keep the same scale at every width during the first steps of training (Yang
et al., Tensor Programs V, "coordinate check"). With Adam and standard
parameterization, a hidden layer's update moves its output by about
lr x fan_in x |x|, so after a few steps activations grow with width and the
optimal LR drifts; µParam (simple) divides the hidden LR by fan_in and keeps
them flat.

For each width the model is trained ``steps`` steps at one constant LR, and
the RMS of every block's output (the residual stream, (B, T, D)) is recorded
after every step. The verdict is the log-log slope of RMS against width at the
last step, per layer: 0 is width-independent (µP's Θ(1)), 1 grows linearly
with width (standard parameterization's worst case). The check passes when
every slope is within ``band``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from trainstab.core.config import CoordinateConfig, SweepConfig, on_gpu
from trainstab.core.crash import crash_of
from trainstab.core.errors import TrainstabError
from trainstab.core.ladder import width_configs
from trainstab.core.results import CoordinateResult
from trainstab.train.corpus import load_corpus
from trainstab.train.engine import train_members
from trainstab.train.models import build_stack
from trainstab.train.torch_state import isolated_torch_state


def _blocks(model: nn.Module, depth: int) -> nn.ModuleList:
    """The model's transformer blocks: the first ModuleList holding ``depth`` modules."""
    root = getattr(model, "template", model)  # a FunctionalStack calls its template
    for module in root.modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise TrainstabError(
        f"the coordinate check found no nn.ModuleList of {depth} blocks in the model; keep the transformer "
        "blocks in one nn.ModuleList so their outputs can be observed"
    )


def _first_tensor(output: object) -> torch.Tensor:
    """A block's hidden states: the output itself or its first tensor (transformers layers return tuples)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TrainstabError(f"a block returned {type(output).__name__}; expected a tensor or a tuple starting with one")


def measure_width(config: SweepConfig, steps: int, lr: float) -> list[list[float]]:
    """Block-output RMS per forward ([step][layer]) over ``steps`` steps at constant ``lr``.

    Trained on one thread, as a sweep's stacks are: the numbers then do not depend on the machine's core
    count, and a check running beside xdist workers or a sweep's pool does not oversubscribe the cores
    (two busy-waiting thread pools on two cores made a 2-second check take a minute).
    """
    with isolated_torch_state(threads=1, deterministic=on_gpu(config)):
        return _measure_width(config, steps, lr)


def _measure_width(config: SweepConfig, steps: int, lr: float) -> list[list[float]]:
    """:func:`measure_width`'s body, inside its torch state."""
    train = dataclasses.replace(
        config.train, steps=steps, warmup_fraction=0.0, lr_floor=lr, probe_every=steps + 1
    )  # lr_floor = peak: no cosine decay inside the window
    model, multipliers = build_stack(config.model_name, config.model, members=1, seed=train.seed, device=train.device)
    rows: list[list[float]] = []
    current: list[float] = []

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        hidden = _first_tensor(output).detach().float()
        current.append(float(hidden.square().mean().sqrt()))

    blocks = _blocks(model, config.model.depth)
    handles = [block.register_forward_hook(record) for block in blocks]
    corpus = load_corpus(config.corpus, config.model.context_length, config.model.vocab_size)

    def next_step(_steps: int) -> None:
        rows.append(current[: len(blocks)])
        current.clear()

    try:
        # One forward per step; the row is complete when the step's progress callback fires.
        train_members(
            model,
            multipliers,
            [lr],
            corpus,
            train,
            config.model.context_length,
            next_step,
            vocab_size=0 if config.model_name == "reference" else config.model.vocab_size,  # see _muon_matrix
        )
    except TrainstabError:
        raise
    except (Exception, SystemExit) as error:  # the model's own: a crash, as in a sweep (trainstab.core.crash)
        during = f"in the coordinate check at width {config.model.width}"
        raise crash_of(error, config.model_name, [lr], len(rows), steps, during) from None
    finally:
        for handle in handles:
            handle.remove()
    return rows


def coordinate_check(base: SweepConfig, coordinates: CoordinateConfig) -> CoordinateResult:
    """Train the base model at every width of ``coordinates`` and measure the activation slopes."""
    if len(set(coordinates.widths)) < 3:
        raise TrainstabError(f"the coordinate check needs at least 3 widths, got {list(coordinates.widths)}")
    configs = width_configs(base, coordinates.widths)
    rms = [measure_width(config, coordinates.steps, coordinates.lr) for config in configs]
    widths = tuple(config.model.width for config in configs)
    slopes = _slopes(widths, [width_rows[-1] for width_rows in rms])
    return CoordinateResult(widths, tuple(tuple(tuple(r) for r in rows) for rows in rms), slopes, coordinates.band)


def _slopes(widths: Sequence[int], last: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Per layer, the least-squares slope of log RMS against log width."""
    x = np.log(np.asarray(widths, dtype=np.float64))
    slopes = []
    for layer in range(len(last[0])):
        y = np.asarray([math.log(max(row[layer], 1e-30)) for row in last])
        slopes.append(float(np.polyfit(x, y, 1)[0]))
    return tuple(slopes)
