"""AdamW over stacked parameters: one learning rate per member, one state.

Every parameter is (M, ...) with M independent members (models), each with
its own peak learning rate. Per member, the step is exactly torch's AdamW
with global-norm clipping, warm-up plus cosine, and the paper's weight-decay
modes:

    independent:  theta <- theta - s_t*eta*mult*Adam - s_t*lambda*theta   (lambda = 1e-4)
    coupled:      theta <- theta - s_t*eta*mult*(Adam + lambda*theta)     (lambda = 0.1)

where s_t is the schedule factor, eta the member's peak LR and mult the
parameter's LR multiplier (µParam). Members never mix: every reduction below
is per member.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from trainstab.core.config import TrainConfig


def schedule(step: int, peak_lrs: torch.Tensor, train: TrainConfig) -> torch.Tensor:
    """LR of each member at ``step`` (0-based): linear warm-up, then cosine to the floor.

    peak_lrs is (M,); returns (M,).
    """
    warmup = train.warmup_steps
    if step < warmup:
        return peak_lrs * ((step + 1) / warmup)
    progress = (step - warmup) / max(1, train.steps - warmup)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    floor = torch.clamp(peak_lrs, max=train.lr_floor)  # never "decay" above a tiny peak
    return floor + (peak_lrs - floor) * cosine


def _per_member(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View an (M,) tensor so it broadcasts against an (M, ...) tensor."""
    return x.view(-1, *([1] * (like.dim() - 1)))


def _sum_of_squares(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per-member sum of squares over all (M, ...) tensors, in fp32: (M,).

    Both sums run along a member's own contiguous row, (M, N) then (M, P): on the CPU a row's sum is the
    same whatever M is. (Summing the (P, M) stack over its first dim, as this once did, blocks the sum by
    M: a member's gradient norm moved in its last bits with the rest of its stack.)
    """
    per_tensor = [t.float().square().flatten(1).sum(1) for t in tensors]  # P of (M,)
    return torch.stack(per_tensor, dim=1).sum(1)  # (M, P) -> (M,)


def gradient_norm(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-member global L2 norm of the current gradients of (M, ...) parameters: (M,)."""
    return _sum_of_squares([p.grad for p in params.values() if p.grad is not None]).sqrt()


def clip_factors(grad_norm: torch.Tensor, train: TrainConfig) -> torch.Tensor:
    """Per-member gradient scale of torch's clip_grad_norm_: clip / (norm + 1e-6) when above, else 1: (M,)."""
    if train.grad_clip <= 0:
        return torch.ones_like(grad_norm)
    return torch.clamp(train.grad_clip / (grad_norm + 1e-6), max=1.0)


@dataclass
class StepMeasurements:
    """Per-member quantities of one optimizer step, each (M,)."""

    grad_norm: torch.Tensor  # global gradient L2 norm before clipping
    grad_rms: torch.Tensor  # global gradient RMS before clipping
    update_rms: torch.Tensor | None  # RMS of (delta theta / lr_t), when measured
    param_rms: torch.Tensor | None  # RMS of the parameters after the step, when measured


class SweepOptimizer(Protocol):
    """What the engine needs from an optimizer over M stacked members (parameters (M, ...)).

    :class:`StackedAdamW` (one batched state) and ``trainstab.train.optimizers.MemberOptimizers`` (any other optimizer,
    one per member) implement it; the engine holds one and calls nothing else.
    """

    def keep(self, members: torch.Tensor, params: Mapping[str, torch.Tensor]) -> None:
        """Keep only the members at indices ``members`` (the rest diverged); ``params`` are their new tensors."""

    def gradient_norm(self) -> torch.Tensor:
        """Per-member global L2 norm of the current gradients: (M,)."""

    def step(
        self, step: int, peak_lrs: torch.Tensor, grad_norm: torch.Tensor, measure: bool = False
    ) -> StepMeasurements:
        """Clip, step every member at its scheduled LR (from ``peak_lrs`` (M,)), apply the sweep's weight decay."""


class StackedAdamW:
    """AdamW with per-member LRs, clipping and decay over (M, ...) parameters."""

    def __init__(
        self, params: Mapping[str, torch.Tensor], lr_multipliers: dict[str, float], train: TrainConfig
    ) -> None:
        self.params = params
        self.lr_multipliers = lr_multipliers
        self.train = train
        self.exp_avg = {name: torch.zeros_like(p) for name, p in params.items()}
        self.exp_avg_sq = {name: torch.zeros_like(p) for name, p in params.items()}

    def keep(self, members: torch.Tensor, params: Mapping[str, torch.Tensor]) -> None:
        """Keep only the members at indices ``members``; ``params`` are their new tensors."""
        self.params = params
        for name in self.params:
            self.exp_avg[name] = self.exp_avg[name][members]
            self.exp_avg_sq[name] = self.exp_avg_sq[name][members]

    def gradient_norm(self) -> torch.Tensor:
        """Per-member global L2 norm of the current gradients: (M,)."""
        return gradient_norm(self.params)

    @torch.no_grad()
    def step(
        self, step: int, peak_lrs: torch.Tensor, grad_norm: torch.Tensor, measure: bool = False
    ) -> StepMeasurements:
        """Clip, then apply one AdamW step at ``step`` with the members' peak LRs (M,)."""
        t = self.train
        lr = schedule(step, peak_lrs, t)  # (M,)
        decay = t.resolved_weight_decay
        clip = clip_factors(grad_norm, t)
        bias1 = 1 - t.beta1 ** (step + 1)
        bias2 = 1 - t.beta2 ** (step + 1)
        update_squares: list[torch.Tensor] = []
        for name, p in self.params.items():
            if p.grad is None:
                continue
            g = p.grad * _per_member(clip, p)
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m.lerp_(g, 1 - t.beta1)
            v.mul_(t.beta2).addcmul_(g, g, value=1 - t.beta2)
            direction = (m / bias1) / ((v / bias2).sqrt_() + t.eps)
            if t.weight_decay_mode == "coupled" and decay:
                direction.add_(p, alpha=decay)
            delta = direction.mul_(_per_member(lr * self.lr_multipliers[name], p))
            if t.weight_decay_mode == "independent" and decay:
                delta.add_(p * _per_member(lr / peak_lrs * decay, p))
            p.sub_(delta)
            if measure:
                update_squares.append(delta / _per_member(lr, p))
        return measured(grad_norm, self.params, update_squares if measure else None)


def measured(
    grad_norm: torch.Tensor, params: Mapping[str, torch.Tensor], updates: list[torch.Tensor] | None
) -> StepMeasurements:
    """A step's measurements: the gradient's norm and RMS, and, when ``updates`` (delta / lr) are given, the
    RMS of the update and of the parameters after it. Each (M,)."""
    numel = sum(p[0].numel() for p in params.values())  # parameters per member
    grad_rms = grad_norm / math.sqrt(numel)
    if updates is None:
        return StepMeasurements(grad_norm, grad_rms, None, None)
    update_rms = (_sum_of_squares(updates) / numel).sqrt()
    param_rms = (_sum_of_squares(list(params.values())) / numel).sqrt()
    return StepMeasurements(grad_norm, grad_rms, update_rms, param_rms)
