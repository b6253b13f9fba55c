"""Optimizers other than AdamW, over stacked (M, ...) parameters: each member is stepped by its own optimizer.

AdamW stays :class:`trainstab.train.optim.StackedAdamW` (one batched state; the paper's numbers). Every other
choice runs per member on proxies: for member k each stacked parameter p (M, ...) has a leaf tensor p_k
(...) that holds p[k] for the step. So torch's own optimizers (``torch.optim.Muon``, ``Adafactor``,
``SGD``), :class:`Lion` below, and a user's factory see plain parameters of one model, each member has
its own state, and its own LR is set on its parameter groups at every step. What stays the sweep's, for
every optimizer: the warm-up plus cosine schedule, global-norm clipping per member, the weight-decay
modes (applied here, not by the optimizer), z-loss, probes and determinism.

- ``muon``: the hidden 2D matrices on Muon (``adjust_lr_fn="match_rms_adamw"``, so AdamW's LR grid
  transfers); embeddings, the unembedding (a dimension of the vocabulary's size or an embedding's name),
  gains and biases on AdamW, as practised.
- ``adafactor``: ``torch.optim.Adafactor`` (its updates are relative to each parameter's RMS).
- ``lion``: sign of the interpolated momentum (Chen et al. 2023), below.
- ``sgd``: ``torch.optim.SGD`` with momentum ``beta1``.
- a name a team registered (:func:`trainstab.extend.register_optimizer`) or ``package.module:callable``:
  ``build(param_groups, peak_lr) -> torch.optim.Optimizer``.

Adding a built-in optimizer: a row in ``trainstab.core.optimizer_table.BUILT_IN`` (its name, help text and whether
it has an epsilon) and its builder in :data:`BUILDERS` here; a test holds the two to the same names.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from trainstab.core import optimizer_table
from trainstab.core.config import TrainConfig
from trainstab.core.errors import TrainstabError
from trainstab.core.optimizer_table import choices
from trainstab.train.optim import StepMeasurements, _per_member, clip_factors, gradient_norm, measured, schedule

#: Names of parameters that embed tokens or positions, or unembed: on AdamW under Muon whatever their shape.
EMBEDDING_NAMES = re.compile(r"(^|[/._])(emb|embed|embedding|embeddings|unembedding|wte|wpe|pos|lm_head)([/._]|$)")


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023): theta -= lr * sign(beta1 * m + (1 - beta1) * g); m <- beta2 * m + (1 - beta2) * g."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99)) -> None:
        super().__init__(params, {"lr": lr, "betas": betas})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Lion step over every parameter with a gradient."""
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                momentum = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.add_(torch.sign(momentum * beta1 + p.grad * (1 - beta1)), alpha=-group["lr"])
                momentum.lerp_(p.grad, 1 - beta2)
        return None


def _user_factory(spec: str) -> Callable[[list[dict[str, Any]], float], torch.optim.Optimizer]:
    """The callable named ``package.module:callable``; a clear error when it cannot be imported."""
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise TrainstabError(
            f"optimizer {spec!r}: cannot import it ({error}); give package.module:callable taking "
            f"(param_groups, peak_lr) and returning a torch.optim.Optimizer, or {choices()}"
        ) from None
    if not callable(factory):
        raise TrainstabError(f"optimizer {spec!r} is not callable")
    return factory  # type: ignore[no-any-return]


def _muon_matrix(name: str, proxy: torch.Tensor, vocab_size: int) -> bool:
    """Whether Muon trains this parameter: a 2D matrix that neither embeds nor unembeds.

    By its name (``EMBEDDING_NAMES``), and for a model whose names may not tell (``vocab_size`` > 0), a
    dimension of the vocabulary's size. The reference passes 0: its names tell, and an MLP of width 4d
    can equal the vocabulary in size.
    """
    if proxy.dim() != 2 or EMBEDDING_NAMES.search(name.lower()):
        return False
    return vocab_size == 0 or vocab_size not in proxy.shape


#: What a builder is given: one member's parameter groups (one per LR multiplier) for some of its parameters.
Groups = Callable[[Iterable[str]], list[dict[str, Any]]]


def _sgd(
    groups: Groups, proxies: Mapping[str, nn.Parameter], train: TrainConfig, vocab_size: int, peak_lr: float
) -> list[torch.optim.Optimizer]:
    """SGD with momentum ``beta1``."""
    return [torch.optim.SGD(groups(proxies), lr=peak_lr, momentum=train.beta1)]


def _adafactor(
    groups: Groups, proxies: Mapping[str, nn.Parameter], train: TrainConfig, vocab_size: int, peak_lr: float
) -> list[torch.optim.Optimizer]:
    """torch's Adafactor; weight decay is the sweep's, applied outside."""
    return [torch.optim.Adafactor(groups(proxies), lr=peak_lr, weight_decay=0.0)]


def _lion(
    groups: Groups, proxies: Mapping[str, nn.Parameter], train: TrainConfig, vocab_size: int, peak_lr: float
) -> list[torch.optim.Optimizer]:
    """:class:`Lion` with betas (``beta1``, 0.99)."""
    return [Lion(groups(proxies), lr=peak_lr, betas=(train.beta1, 0.99))]


def _muon(
    groups: Groups, proxies: Mapping[str, nn.Parameter], train: TrainConfig, vocab_size: int, peak_lr: float
) -> list[torch.optim.Optimizer]:
    """Muon on the hidden matrices (:func:`_muon_matrix`), AdamW on the rest."""
    names = list(proxies)
    hidden = [name for name in names if _muon_matrix(name, proxies[name], vocab_size)]
    rest = [name for name in names if name not in hidden]
    optimizers: list[torch.optim.Optimizer] = []
    if hidden:
        muon = torch.optim.Muon(groups(hidden), lr=peak_lr, weight_decay=0.0, adjust_lr_fn="match_rms_adamw")
        optimizers.append(muon)
    if rest:
        betas = (train.beta1, train.beta2)
        optimizers.append(torch.optim.AdamW(groups(rest), lr=peak_lr, betas=betas, eps=train.eps, weight_decay=0.0))
    return optimizers


#: The builders of the built-in optimizers other than AdamW (stacked: trainstab.train.optim.StackedAdamW), by the
#: names of trainstab.core.optimizer_table.BUILT_IN.
BUILDERS: dict[
    str, Callable[[Groups, Mapping[str, nn.Parameter], TrainConfig, int, float], list[torch.optim.Optimizer]]
] = {
    "muon": _muon,
    "adafactor": _adafactor,
    "lion": _lion,
    "sgd": _sgd,
}


def build_member_optimizers(
    proxies: Mapping[str, nn.Parameter],
    multipliers: Mapping[str, float],
    train: TrainConfig,
    vocab_size: int,
    peak_lr: float,
) -> list[torch.optim.Optimizer]:
    """One member's optimizers over its proxies: a param group per LR multiplier (``group["multiplier"]``)."""

    def groups(names: Iterable[str]) -> list[dict[str, Any]]:
        by_multiplier: dict[float, list[nn.Parameter]] = {}
        for name in names:
            by_multiplier.setdefault(multipliers[name], []).append(proxies[name])
        return [{"params": params, "multiplier": m, "lr": peak_lr * m} for m, params in by_multiplier.items()]

    choice = train.optimizer
    if choice in BUILDERS:
        return BUILDERS[choice](groups, proxies, train, vocab_size, peak_lr)
    entry = optimizer_table.optimizers().get(choice)
    build = entry.build if entry is not None and entry.build is not None else _user_factory(choice)
    optimizer = build(groups(proxies), peak_lr)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TrainstabError(f"optimizer {choice!r} returned {type(optimizer).__name__}, not a torch.optim.Optimizer")
    for group in optimizer.param_groups:  # a factory may rebuild its groups: the LR then applies unscaled
        group.setdefault("multiplier", 1.0)
    return [optimizer]


class MemberOptimizers:
    """The StackedAdamW interface (keep, gradient_norm, step) for any other optimizer, one per member."""

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        lr_multipliers: dict[str, float],
        train: TrainConfig,
        vocab_size: int,
        peak_lrs: torch.Tensor,
    ) -> None:
        self.params = params
        self.train = train
        self.lr_multipliers = lr_multipliers
        members = next(iter(params.values())).shape[0]
        # Proxies keyed as the stacked parameters; leaf tensors, so any torch optimizer takes them.
        self.proxies = [
            {name: nn.Parameter(p.detach()[k].clone()) for name, p in params.items()} for k in range(members)
        ]
        self.optimizers = [
            build_member_optimizers(proxies, lr_multipliers, train, vocab_size, float(peak_lrs[k]))
            for k, proxies in enumerate(self.proxies)
        ]

    def keep(self, members: torch.Tensor, params: Mapping[str, torch.Tensor]) -> None:
        """Keep only the members at indices ``members``; ``params`` are their new tensors."""
        self.params = params
        self.proxies = [self.proxies[k] for k in members.tolist()]
        self.optimizers = [self.optimizers[k] for k in members.tolist()]

    def gradient_norm(self) -> torch.Tensor:
        """Per-member global L2 norm of the current gradients: (M,)."""
        return gradient_norm(self.params)

    @torch.no_grad()
    def step(
        self, step: int, peak_lrs: torch.Tensor, grad_norm: torch.Tensor, measure: bool = False
    ) -> StepMeasurements:
        """Clip, step every member's optimizers at its scheduled LR, then apply the sweep's weight decay."""
        t = self.train
        lr = schedule(step, peak_lrs, t)  # (M,)
        decay = t.resolved_weight_decay
        clip = clip_factors(grad_norm, t)  # as StackedAdamW's
        before = {name: p.detach().clone() for name, p in self.params.items()} if measure else {}
        for k, (proxies, optimizers) in enumerate(zip(self.proxies, self.optimizers, strict=True)):
            for name, p in self.params.items():
                proxies[name].copy_(p[k])
                proxies[name].grad = p.grad[k] * clip[k] if p.grad is not None else None
            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = float(lr[k]) * group["multiplier"]
                optimizer.step()
            # The paper's decay modes, the same for every optimizer: independent (lambda, scheduled but not
            # scaled by the LR) or coupled (lambda times the LR), both decoupled from the gradient.
            shrink = 0.0
            if decay and t.weight_decay_mode == "independent":
                shrink = float(lr[k] / peak_lrs[k]) * decay
            elif decay and t.weight_decay_mode == "coupled":
                shrink = float(lr[k]) * decay
            for name, p in self.params.items():
                if p.grad is None:  # as StackedAdamW: a tensor without a gradient is neither stepped nor decayed
                    continue
                # The coupled decay follows the parameter's LR, as StackedAdamW's (µParam's multiplier included).
                scale = self.lr_multipliers[name] if t.weight_decay_mode == "coupled" else 1.0
                p[k].copy_(proxies[name] - shrink * scale * p[k])
        updates = [(before[name] - p) / _per_member(lr, p) for name, p in self.params.items()] if measure else None
        return measured(grad_norm, self.params, updates)
