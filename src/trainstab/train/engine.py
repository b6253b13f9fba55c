"""Train M members of a stacked model at M learning rates, with the probes on.

One call trains every member on the same batches, from the same init, each at
its own peak LR. The steps of :func:`train_members`:

1. Forward all live members at once; on probe steps, inside an attention
   capture. Logits are (M, B, T, V).
2. Per-member loss: mean cross-entropy plus z-loss c * mean (log Z)^2.
3. Backward through the sum of the members' losses (members are independent,
   so each gets exactly its own gradient).
4. A member whose loss or gradient norm is not finite has diverged: it is
   recorded and dropped from the stack, and the others go on.
5. Clip and step AdamW per member; on probe steps record the metrics.

Members never mix: every per-member number (loss, log Z, gradient norm and
clip factor, the probes) is reduced along that member's own rows of the
(M, ...) tensors, never across members. On the CPU, on one thread as sweeps
train, a member's losses, history and eval loss are bit for bit those of
its LR trained alone (M = 1), whatever the other members are and whenever
some are dropped (:mod:`trainstab.train.sweep` says why; not guaranteed on a GPU).

Metrics are flat dicts with slash keys, computed in fp32. The forward runs in
fp32, or under bf16 autocast (``TrainConfig.precision``), on the device the
model was moved to (``TrainConfig.device``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import ParamSpec

import torch
from torch import nn

from trainstab.core import results
from trainstab.core.config import TrainConfig
from trainstab.core.errors import TrainstabError
from trainstab.train.capture import AttentionRecord, capture_attention
from trainstab.train.corpus import Corpus
from trainstab.train.flex_emulation import flex_attention_on_cpu
from trainstab.train.losses import cross_entropy_with_log_z
from trainstab.train.models import NO_ATTENTION_HINT, own_parameter_name
from trainstab.train.optim import StackedAdamW, StepMeasurements, SweepOptimizer
from trainstab.train.optimizers import MemberOptimizers

#: Called with the number of optimizer steps just completed (for progress bars).
ProgressCallback = Callable[[int], None]


@dataclass
class MemberRun:
    """Everything recorded while training one member (one learning rate)."""

    lr: float  # peak learning rate
    losses: list[float] = field(default_factory=list)  # training cross-entropy per step, until divergence
    history: list[dict[str, float]] = field(
        default_factory=list
    )  # probe snapshots, keyed as trainstab.core.results names them
    diverged_at_step: int | None = None  # first step with a non-finite loss or gradient
    eval_loss: float = math.nan  # held-out cross-entropy after training (NaN if diverged)
    nondeterministic_ops: list[str] = field(default_factory=list)  # ops PyTorch ran without a deterministic kernel


def forward_precision(train: TrainConfig, device: torch.device) -> AbstractContextManager[object]:
    """The forward's precision: nothing for fp32; bf16 autocast (the paper's mixed precision) for bf16.

    Only the forward is autocast: the weights, gradients and optimizer state stay fp32, and the loss, log Z
    and the probes are computed from fp32 copies (``cross_entropy_with_log_z`` and the capture upcast).
    """
    if train.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def attention_metrics(records: list[AttentionRecord], members: int) -> list[dict[str, float]]:
    """Per-member attention metrics from one forward's records.

    Each record is (M*B, H) for a stacked forward; returns one dict per member
    with max |logit| and entropy per layer (and per head), and the max over layers.
    """
    out: list[dict[str, float]] = [{} for _ in range(members)]
    layer_maxima: list[list[float]] = [[] for _ in range(members)]
    for layer, record in enumerate(records):
        heads = record.max_abs_logit.shape[-1]
        max_logit = record.max_abs_logit.view(members, -1, heads).amax(dim=1)  # (M, H)
        entropy = record.entropy.view(members, -1, heads).mean(dim=1)  # (M, H)
        for m, metrics in enumerate(out):
            metrics[results.attention_layer_key(layer)] = float(max_logit[m].max())
            layer_maxima[m].append(metrics[results.attention_layer_key(layer)])
            metrics[results.entropy_layer_key(layer)] = float(entropy[m].mean())
            for h in range(heads):
                metrics[results.attention_layer_key(layer, h)] = float(max_logit[m, h])
    for metrics, maxima in zip(out, layer_maxima, strict=True):
        metrics[results.ATTN_MAX_LOGIT] = max(maxima)
    return out


def _live_subset(model: nn.Module, optimizer: SweepOptimizer, keep: torch.Tensor) -> dict[str, nn.Parameter]:
    """Keep only the members at indices ``keep``; returns the new parameters.

    The parameters are replaced by new leaves (resizing ``.data`` in place would
    leave autograd's cached shapes stale).
    """
    with torch.no_grad():
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is not None:
                    kept = nn.Parameter(p.detach()[keep])
                    kept.grad = p.grad[keep] if p.grad is not None else None
                    module._parameters[name] = kept
    params = dict(model.named_parameters())
    optimizer.keep(keep, params)
    return params


Params = ParamSpec("Params")


def _in_flex_scope(train: Callable[Params, list[MemberRun]]) -> Callable[Params, list[MemberRun]]:
    """Run ``train`` (whose first argument is the model) inside flex_emulation's scope, backward included: a
    backward that recomputes a checkpointed forward calls the model's flex_attention again, outside
    FunctionalStack.forward's scope."""

    @functools.wraps(train)
    def in_scope(*args: Params.args, **kwargs: Params.kwargs) -> list[MemberRun]:
        model = args[0] if args else kwargs["model"]
        assert isinstance(model, nn.Module)
        with flex_attention_on_cpu(next(model.parameters()).device):
            return train(*args, **kwargs)

    return in_scope


@_in_flex_scope
def train_members(
    model: nn.Module,
    lr_multipliers: dict[str, float],
    lrs: list[float],
    corpus: Corpus,
    train: TrainConfig,
    context_length: int,
    progress: ProgressCallback | None = None,
    vocab_size: int = 0,
) -> list[MemberRun]:
    """Train the M members of ``model`` (parameters (M, ...)) at peak LRs ``lrs``.

    ``vocab_size`` tells Muon which matrices embed or unembed (0: by their names only).
    """
    runs = [MemberRun(lr=lr) for lr in lrs]
    live = list(range(len(lrs)))  # indices into runs of the members still in the stack
    params = dict(model.named_parameters())
    device = next(iter(params.values())).device  # where train_stack put the model
    peak = torch.tensor(lrs, dtype=torch.float32, device=device)
    optimizer: SweepOptimizer = (
        StackedAdamW(params, lr_multipliers, train)
        if train.optimizer == "adamw"
        else MemberOptimizers(params, lr_multipliers, train, vocab_size, peak)
    )
    batches = corpus.batches(train.steps, train.batch_size, context_length, train.seed).to(device)  # (S, B, T+1)

    # A model may act on itself after each step (the reference's QK-clip); it is told which members remain.
    after_step = getattr(model, "after_optimizer_step", None)
    for step in range(train.steps):
        kept: torch.Tensor | None = None  # the members kept this step, when some diverged
        probe = step % train.probe_every == 0 or step == train.steps - 1
        idx, targets = batches[step, :, :-1], batches[step, :, 1:]  # (B, T) each
        m = len(live)
        # 1-2. Forward and per-member losses.
        capture: AbstractContextManager[list[AttentionRecord]] = capture_attention() if probe else nullcontext([])
        with capture as records, forward_precision(train, device):
            logits = model(idx)  # (M, B, T, V); bf16 under bf16 autocast, upcast by the loss
        vocab = logits.shape[-1]
        ce, log_z = cross_entropy_with_log_z(logits.reshape(-1, vocab), targets.reshape(-1).repeat(m))
        ce, log_z = ce.view(m, -1), log_z.view(m, -1)  # (M, B*T)
        loss = ce.mean(1) + train.z_loss * log_z.square().mean(1)  # (M,)
        # 3. Backward: the sum's gradient w.r.t. member k's parameters is member k's own.
        for p in params.values():
            p.grad = None
        loss.sum().backward()  # type: ignore[no-untyped-call]
        grad_norm = optimizer.gradient_norm()
        # 4. Divergence: one sync per step for the loss curve and the finiteness check.
        ce_mean = ce.detach().mean(1)
        finite = (torch.isfinite(ce_mean) & torch.isfinite(grad_norm)).tolist()
        for run_index, ok, value in zip(live, finite, ce_mean.tolist(), strict=True):
            if ok:
                runs[run_index].losses.append(value)
            else:
                runs[run_index].diverged_at_step = step
        if not all(finite):
            keep = kept = torch.tensor([slot for slot, ok in enumerate(finite) if ok], dtype=torch.long, device=device)
            params = _live_subset(model, optimizer, keep)
            live = [live[slot] for slot in keep.tolist()]
            peak, grad_norm, ce_mean = peak[keep], grad_norm[keep], ce_mean[keep]
            logits, log_z = logits.detach()[keep], log_z.detach()[keep]
            if probe:
                records = [_select_members(r, keep, m) for r in records]
            if not live:
                break
        # 5. Step, then record the probes.
        measured = optimizer.step(step, peak, grad_norm, measure=probe)
        if after_step is not None:
            after_step(kept)
        if probe:
            _record_probe(runs, live, step, records, logits.detach(), log_z.detach(), measured, ce_mean, params)
        if progress is not None:
            progress(1)
    _evaluate(model, runs, live, corpus, train, context_length)
    return runs


def _select_members(record: AttentionRecord, keep: torch.Tensor, members: int) -> AttentionRecord:
    """The rows of a (M*B, H) record that belong to the members in ``keep``."""
    heads = record.max_abs_logit.shape[-1]

    def pick(rows: torch.Tensor) -> torch.Tensor:
        return rows.view(members, -1, heads)[keep].reshape(-1, heads)

    return AttentionRecord(pick(record.max_abs_logit), pick(record.entropy))


def _record_probe(
    runs: list[MemberRun],
    live: list[int],
    step: int,
    records: list[AttentionRecord],
    logits: torch.Tensor,
    log_z: torch.Tensor,
    measured: StepMeasurements,
    ce_mean: torch.Tensor,
    params: dict[str, nn.Parameter],
) -> None:
    """Append one probe snapshot to every live member's history."""
    if not records:
        raise TrainstabError(NO_ATTENTION_HINT)
    m = len(live)
    attention = attention_metrics(records, m)
    flat_logits = logits.float().reshape(m, -1)
    max_abs_logit = flat_logits.abs().amax(1)
    assert measured.update_rms is not None and measured.param_rms is not None
    # Raw (unclipped) gradient RMS per parameter tensor: a layer whose gradient nears
    # AdamW's epsilon, or is exactly zero (a dead layer), shows here first.
    per_param = {
        own_parameter_name(name): p.grad.float().square().flatten(1).mean(1).sqrt().tolist()
        if p.grad is not None
        else [0.0] * m
        for name, p in params.items()
    }
    for slot, run_index in enumerate(live):
        snapshot = {results.STEP: float(step), results.LOSS: float(ce_mean[slot])}
        snapshot.update(attention[slot])
        snapshot[results.LOG_Z_MEAN] = float(log_z[slot].mean())
        snapshot[results.LOG_Z_MIN] = float(log_z[slot].min())
        snapshot[results.LOG_Z_MAX] = float(log_z[slot].max())
        snapshot[results.MAX_ABS_OUTPUT_LOGIT] = float(max_abs_logit[slot])
        snapshot[results.GRAD_NORM] = float(measured.grad_norm[slot])
        snapshot[results.GRAD_RMS] = float(measured.grad_rms[slot])
        snapshot[results.UPDATE_RMS] = float(measured.update_rms[slot])
        snapshot[results.PARAM_RMS] = float(measured.param_rms[slot])
        for name, values in per_param.items():
            snapshot[results.GRAD_RMS_OF + name] = values[slot]
        runs[run_index].history.append(snapshot)


@torch.no_grad()
def _evaluate(
    model: nn.Module, runs: list[MemberRun], live: list[int], corpus: Corpus, train: TrainConfig, context_length: int
) -> None:
    """Held-out cross-entropy of every member still alive."""
    if not live:
        return
    device = next(model.parameters()).device
    batch = corpus.evaluation_batch(train.batch_size, context_length, train.seed).to(device)  # (B, T+1)
    with forward_precision(train, device):
        logits = model(batch[:, :-1])  # (M, B, T, V)
    vocab = logits.shape[-1]
    ce, _ = cross_entropy_with_log_z(logits.reshape(-1, vocab), batch[:, 1:].reshape(-1).repeat(len(live)))
    for slot, value in enumerate(ce.view(len(live), -1).mean(1).tolist()):
        runs[live[slot]].eval_loss = value
