"""Benchmark: the sweep engine against a plain serial PyTorch loop, same work, one run.

    python benchmarks/bench_sweep.py [--steps 200] [--json out.json]

The plain loop is written the way a user would write an LR sweep: for each LR,
build the model, torch.optim.AdamW, a LambdaLR warm-up plus cosine schedule,
clip_grad_norm_, cross-entropy plus z-loss, on torch's default thread count.
Both train the default reference model on the same batches from the same
init. Printed: wall-clock of each, their ratio (target: engine >= 3x faster),
the largest difference in final loss per LR (equal results), and the model
FLOP rate of each against this machine's measured fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from trainstab.config import SweepConfig, TrainConfig
from trainstab.corpus import load_corpus
from trainstab.reference import ReferenceLM
from trainstab.sweep import run_sweep

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


def model_flops(config: SweepConfig) -> float:
    """Training FLOPs of the whole sweep: 3x forward (matmuls and attention scores)."""
    m, t = config.model, config.train
    matmul_params = m.depth * (4 + 2 * m.mlp_ratio) * m.width**2 + m.width * m.vocab_size
    per_token_forward = 2 * matmul_params + m.depth * 2 * 2 * m.context_length * m.width
    return 3 * per_token_forward * t.batch_size * m.context_length * t.steps * len(config.lrs)


def plain_loop(config: SweepConfig) -> list[float]:
    """The user's serial sweep; returns the final loss per LR."""
    m, t = config.model, config.train
    corpus = load_corpus(None, m.context_length, m.vocab_size)
    batches = corpus.batches(t.steps, t.batch_size, m.context_length, t.seed)
    window = max(1, math.ceil(t.final_loss_fraction * t.steps))
    finals = []
    for lr in config.lrs:
        model = ReferenceLM(m, seed=t.seed)
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
            logits = model(batch[:, :-1])
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


def main() -> None:
    """Run both, print the comparison, optionally save it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TrainConfig().steps)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    config = SweepConfig(train=TrainConfig(steps=args.steps))
    peak_all = matmul_peak_gflops(torch.get_num_threads())
    peak_one = matmul_peak_gflops(1)

    started = time.perf_counter()
    plain = plain_loop(config)
    plain_seconds = time.perf_counter() - started
    started = time.perf_counter()
    engine = run_sweep(config)
    engine_seconds = time.perf_counter() - started

    flops = model_flops(config)
    print(f"default sweep: {len(config.lrs)} LRs x {config.train.steps} steps, seed {config.train.seed}")
    print(f"fp32 matmul peak: {peak_all:.0f} GFLOP/s on {torch.get_num_threads()} threads, {peak_one:.0f} on 1")
    print(f"plain serial loop: {plain_seconds:6.2f} s  {flops / plain_seconds / 1e9:5.1f} GFLOP/s")
    print(f"trainstab engine:  {engine_seconds:6.2f} s  {flops / engine_seconds / 1e9:5.1f} GFLOP/s")
    print(f"speed-up: {plain_seconds / engine_seconds:.2f}x (target >= 3x)")
    print(
        f"share of matmul peak: plain {flops / plain_seconds / 1e9 / peak_all:.0%}, "
        f"engine {flops / engine_seconds / 1e9 / peak_all:.0%}"
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
        with open(args.json, "w") as out:
            json.dump({"plain_seconds": plain_seconds, "engine_seconds": engine_seconds,
                       "speedup": plain_seconds / engine_seconds, "peak_gflops": peak_all,
                       "model_gflop": flops / 1e9, "equal_results": agree}, out, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
