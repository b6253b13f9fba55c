"""Cross-entropy with z-loss, fused so that log Z comes out for free.

For logits y (N, V) and targets t (N,), with log Z = logsumexp(y):
    ce = log Z - y_t        z-loss term = c * (log Z)^2
The backward is softmax(y) * (g_ce + g_logZ) - onehot(t) * g_ce.

Why not autograd through ``torch.logsumexp``: on the CPU its broadcast
subtraction over (N, V) and the backward's row-broadcast multiply are memory
passes several times slower than ``log_softmax``. Here the forward is one
``log_softmax`` (log Z is read off one column), and the backward one ``exp``
softmax and a row scaling done on the transposed view, where the broadcast is
cheap.
"""

from __future__ import annotations

from typing import Any

import torch


class _CrossEntropyWithLogZ(torch.autograd.Function):
    """Per-token cross-entropy and log Z of fp32 logits, with a fused backward."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs = torch.log_softmax(logits, dim=-1)  # (N, V)
        log_z = logits[:, 0] - log_probs[:, 0]  # log p_j = y_j - log Z for any column j
        ce = -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N,)
        ctx.save_for_backward(log_probs, targets)
        return ce, log_z

    @staticmethod
    def backward(ctx: Any, grad_ce: torch.Tensor | None, grad_log_z: torch.Tensor | None) -> tuple[torch.Tensor, None]:
        log_probs, targets = ctx.saved_tensors
        zeros = torch.zeros(log_probs.shape[0], dtype=log_probs.dtype, device=log_probs.device)
        g_ce = grad_ce if grad_ce is not None else zeros
        g_z = grad_log_z if grad_log_z is not None else zeros
        # softmax via the softmax kernel: a plain exp() of log-probs below about -87
        # takes a slow path on the CPU (measured 25x slower), and trained models have many.
        grad = torch.softmax(log_probs, dim=-1)  # (N, V)
        grad.t().mul_(g_ce + g_z)  # row scaling on the transposed view: a contiguous broadcast
        grad.scatter_add_(1, targets.unsqueeze(1), -g_ce.unsqueeze(1))
        return grad, None


def cross_entropy_with_log_z(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy and log Z for logits (N, V) and targets (N,).

    Both outputs are differentiable, so ``ce + c * log_z**2`` is the loss with
    z-loss coefficient ``c``.
    """
    result: tuple[torch.Tensor, torch.Tensor] = _CrossEntropyWithLogZ.apply(logits.float(), targets)  # type: ignore[no-untyped-call]
    return result
