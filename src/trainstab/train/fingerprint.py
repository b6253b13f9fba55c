"""A model's fingerprint: what its code does at initialisation, as one digest.

The persistent sweep cache (:mod:`trainstab.cache.sweep_cache`) may hand back a
sweep trained by an earlier run only if the model is the same model. Its
name cannot tell: the code behind ``mypkg.models:build`` changes under the
same name. So the model is built exactly as a sweep builds it (one member, the
sweep's seed) and run once, forward and backward, on a fixed batch of the
sweep's corpus; the digest covers every trainable parameter's name, shape,
dtype and values at init, the logits and every parameter's gradient, bit for
bit. An init change, a moved norm, a detached branch or a changed loss moves
at least one of those numbers.

What it cannot see: a code path that only runs later in training (a switch on
the step count, a schedule inside the model). Those changes need a new
cache folder, or no cache.
"""

from __future__ import annotations

import hashlib

import torch

from trainstab.core.config import SweepConfig
from trainstab.train.corpus import load_corpus
from trainstab.train.flex_emulation import flex_attention_on_cpu
from trainstab.train.losses import cross_entropy_with_log_z
from trainstab.train.models import build_stack
from trainstab.train.torch_state import isolated_torch_state


def _feed(digest: hashlib._Hash, name: str, tensor: torch.Tensor) -> None:
    """Add a named tensor to ``digest``: its name, shape, dtype and raw bytes."""
    data = tensor.detach().contiguous().cpu()
    digest.update(f"{name}|{tuple(data.shape)}|{data.dtype}|".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")


def model_fingerprint(config: SweepConfig) -> str:
    """The digest of ``config``'s model at initialisation: parameters, logits and gradients on a fixed batch.

    Deterministic on one machine and one torch build (one thread, torch's start-up state); the
    caller keys the cache on those too.
    """
    model_config, train = config.model, config.train
    corpus = load_corpus(config.corpus, model_config.context_length, model_config.vocab_size)
    with isolated_torch_state(threads=1):
        torch.manual_seed(train.seed)  # a forward that draws random numbers (dropout) draws the same ones
        model, _ = build_stack(config.model_name, model_config, members=1, seed=train.seed)
        batch = corpus.batches(1, train.batch_size, model_config.context_length, train.seed)[0]  # (B, T + 1)
        logits = model(batch[:, :-1])  # (1, B, T, V)
        vocab = logits.shape[-1]
        ce, log_z = cross_entropy_with_log_z(logits.reshape(-1, vocab), batch[:, 1:].reshape(-1))
        loss = ce.mean() + train.z_loss * log_z.square().mean()
        with flex_attention_on_cpu("cpu"):  # a checkpointed forward calls flex again in the backward
            loss.backward()  # type: ignore[no-untyped-call]
        digest = hashlib.sha256()
        for name, parameter in sorted(model.named_parameters()):
            _feed(digest, f"param:{name}", parameter)
            gradient = parameter.grad if parameter.grad is not None else torch.zeros(0)
            _feed(digest, f"grad:{name}", gradient)
        _feed(digest, "logits", logits)
        digest.update(torch.backends.cpu.get_cpu_capability().encode())  # the kernels that computed all this
    return digest.hexdigest()
