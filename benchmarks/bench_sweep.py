"""Benchmark: the sweep engine against a plain serial PyTorch loop of the same model, same work, one run.

    python benchmarks/bench_sweep.py [--model reference|hf:llama|hf:gpt2|gpt_models:pre_ln_qk_norm]
                                     [--steps 200] [--json out.json]

The plain loop is written the way a user would write an LR sweep: for each LR,
build the model, torch.optim.AdamW, a LambdaLR warm-up plus cosine schedule,
clip_grad_norm_, cross-entropy plus z-loss, on torch's default thread count.
Both train the same model on the same batches from the same init. Printed:

- wall-clock of each and their ratio (target: engine >= 3x faster), and the
  largest difference in final loss per LR (equal results);
- each one's model FLOP rate (FLOPs of one training step counted by
  torch.utils.flop_counter) against this machine's measured fp32 matmul peak;
- for a user or ``hf:`` model, one training step of M members as the engine
  runs it (one functional_call per member) against the same M members batched
  with torch.func.vmap: what batching the members would buy.

``gpt_models:`` factories are the hand-written GPTs of ``stability_tests/``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "stability_tests"))  # gpt_models: user factories

from trainstab.core.config import STACK_SIZE, SweepConfig, TrainConfig
from trainstab.train.corpus import load_corpus
from trainstab.train.models import REFERENCE, ModelSize, build_stack, build_template
from trainstab.train.reference import ReferenceLM
from trainstab.train.sweep import run_sweep

# Equal results: the two loops run the same algorithm in a different op order, so
# low-order bits differ; at stable LRs the final losses must agree to this much.
# Above lr 0.03 the runs are chaotic (bit-level differences grow), so only the
# divergence verdict and the loss to a looser bound are compared.
STABLE_LR_LIMIT = 0.03
STABLE_AGREEMENT = 0.02
CHAOTIC_AGREEMENT = 0.15


def matmul_peak_gflops(threads: int, size: int = 1024, repeats: int = 20) -> float:
    """Measured fp32 matmul rate of this machine on ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    elapsed = time.perf_counter() - started
    torch.set_num_threads(before)
    return 2 * size**3 * repeats / elapsed / 1e9


def plain_model(config: SweepConfig) -> torch.nn.Module:
    """One member of the sweep's model, as a user builds it: the reference's single model, or the factory's."""
    m, seed = config.model, config.train.seed
    if config.model_name == REFERENCE:
        return ReferenceLM(m, seed=seed)
    return build_template(config.model_name, ModelSize.of(m), seed)


def logits_of(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """The model's logits (B, T, V): a tensor, or the ``.logits`` of a transformers output."""
    output = model(idx)
    logits: torch.Tensor = getattr(output, "logits", output)
    return logits


def step_flops(config: SweepConfig) -> float:
    """FLOPs of one training step (forward and backward) of one member, counted by torch."""
    m, t = config.model, config.train
    model = plain_model(config)
    idx = torch.zeros(t.batch_size, m.context_length, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        logits_of(model, idx).float().logsumexp(-1).mean().backward()
    return float(counter.get_total_flops())


def plain_loop(config: SweepConfig) -> list[float]:
    """The user's serial sweep; returns the final loss per LR."""
    m, t = config.model, config.train
    corpus = load_corpus(None, m.context_length, m.vocab_size)
    batches = corpus.batches(t.steps, t.batch_size, m.context_length, t.seed)
    window = max(1, math.ceil(t.final_loss_fraction * t.steps))
    finals = []
    for lr in config.lrs:
        model = plain_model(config)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=lr, betas=(t.beta1, t.beta2), eps=t.eps, weight_decay=1e-4 / lr
        )
        warmup, floor = t.warmup_steps, min(t.lr_floor, lr)

        def factor(step: int, lr: float = lr, warmup: int = warmup, floor: float = floor) -> float:
            if step < warmup:
                return (step + 1) / warmup
            cosine = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (t.steps - warmup)))
            return (floor + (lr - floor) * cosine) / lr

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        losses = []
        for step in range(t.steps):
            batch = batches[step]
            logits = logits_of(model, batch[:, :-1]).float()
            ce = F.cross_entropy(logits.reshape(-1, m.vocab_size), batch[:, 1:].reshape(-1))
            loss = ce + t.z_loss * torch.logsumexp(logits, dim=-1).square().mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(ce.item())
        finals.append(sum(losses[-window:]) / window)
    return finals


def members_loop_vs_vmap(config: SweepConfig, repeats: int = 10) -> tuple[float, float]:
    """Seconds per training step of STACK_SIZE members on one thread: the engine's loop, and batched by vmap."""
    m, t = config.model, config.train
    stack, _ = build_stack(config.model_name, m, members=STACK_SIZE, seed=t.seed)
    template = stack.__dict__["template"]
    params = {n: stack.stacked[n.replace(".", "/")] for n in stack.names}
    idx = torch.randint(0, m.vocab_size, (t.batch_size, m.context_length), generator=torch.Generator().manual_seed(0))
    batched = vmap(lambda p, x: logits_of_call(template, p, x), in_dims=(0, None))

    def timed(step: Callable[[], object]) -> float:
        for _ in range(2):  # warm-up
            step()
        started = time.perf_counter()
        for _ in range(repeats):
            step()
        return (time.perf_counter() - started) / repeats

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loop = timed(lambda: stack(idx).logsumexp(-1).mean().backward())
        vmapped = timed(lambda: batched(params, idx).float().logsumexp(-1).mean().backward())
    finally:
        torch.set_num_threads(before)
    return loop, vmapped


def logits_of_call(template: torch.nn.Module, params: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """One member's logits: the template run with ``params`` (what FunctionalStack does per member)."""
    output = functional_call(template, params, (idx,))
    logits: torch.Tensor = getattr(output, "logits", output)
    return logits


def main() -> None:
    """Run both, print the comparison, optionally save it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=REFERENCE, help="reference, hf:<type> or package.module:factory")
    parser.add_argument("--steps", type=int, default=TrainConfig().steps)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    config = SweepConfig(model_name=args.model, train=TrainConfig(steps=args.steps))
    peak_all = matmul_peak_gflops(torch.get_num_threads())
    peak_one = matmul_peak_gflops(1)
    flops = step_flops(config) * config.train.steps * len(config.lrs)

    started = time.perf_counter()
    plain = plain_loop(config)
    plain_seconds = time.perf_counter() - started
    started = time.perf_counter()
    engine = run_sweep(config)
    engine_seconds = time.perf_counter() - started

    print(f"{args.model}: {len(config.lrs)} LRs x {config.train.steps} steps, seed {config.train.seed}")
    print(f"fp32 matmul peak: {peak_all:.0f} GFLOP/s on {torch.get_num_threads()} threads, {peak_one:.0f} on 1")
    print(f"plain serial loop: {plain_seconds:6.2f} s  {flops / plain_seconds / 1e9:5.1f} GFLOP/s")
    print(f"trainstab engine:  {engine_seconds:6.2f} s  {flops / engine_seconds / 1e9:5.1f} GFLOP/s")
    print(f"engine vs plain loop: {plain_seconds / engine_seconds:.2f}x (target >= 3x)")
    print(
        f"share of matmul peak: plain {flops / plain_seconds / 1e9 / peak_all:.0%}, "
        f"engine {flops / engine_seconds / 1e9 / peak_all:.0%}"
    )
    batching = None
    if args.model != REFERENCE:  # the reference trains its members batched already (stacked weights, bmm)
        loop, vmapped = members_loop_vs_vmap(config)
        batching = loop / vmapped
        print(
            f"one step of {STACK_SIZE} members on 1 thread: engine's per-member loop {loop * 1e3:.1f} ms, "
            f"vmap-batched {vmapped * 1e3:.1f} ms ({batching:.2f}x)"
        )
    print(f"{'lr':>8} {'plain':>8} {'engine':>8} {'|diff|':>8}  bound")
    agree = True
    for lr, ours, run in zip(config.lrs, plain, engine.runs, strict=True):
        bound = STABLE_AGREEMENT if lr <= STABLE_LR_LIMIT else CHAOTIC_AGREEMENT
        diff = abs(ours - run.final_loss)
        agree &= diff <= bound and not run.diverged
        print(f"{lr:8g} {ours:8.4f} {run.final_loss:8.4f} {diff:8.4f}  {bound}")
    print(f"equal results: {'yes' if agree else 'NO'}")
    if args.json:
        numbers = {
            "model": args.model,
            "plain_seconds": plain_seconds,
            "engine_seconds": engine_seconds,
            "speedup": plain_seconds / engine_seconds,
            "peak_gflops": peak_all,
            "model_gflop": flops / 1e9,
            "vmap_vs_member_loop": batching,
            "equal_results": agree,
        }
        Path(args.json).write_text(json.dumps(numbers, indent=2) + "\n")


if __name__ == "__main__":
    main()
