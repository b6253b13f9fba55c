"""Benchmark: what attention capture costs a sweep, against the same sweep with capture off, in one run.

    python benchmarks/bench_capture.py [--steps 200] [--repeats 3] [--model reference] [--json out.json]

Both arms train the same members (the default LR grid, in this process) on
the same batches with every other probe on. "Off" replaces the capture with
a stub that records zeros of the right shape, so the engine's bookkeeping is
identical and only the tracer's work differs. Arms alternate, and the
median of the repeats is reported. Capture runs only on probe steps
(every ``probe_every`` steps and the last); steps that do not probe never
enter it, so the per-probe cost below, times the probe count, is all of it.
Target: capture adds <= 15% to a sweep of the reference model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import torch

from trainstab.core.config import ModelConfig, TrainConfig
from trainstab.train import engine
from trainstab.train.capture import AttentionRecord, capture_attention
from trainstab.train.corpus import load_corpus
from trainstab.train.models import build_stack

TARGET = 0.15


def _shapes(name: str, config: ModelConfig, batch: int) -> list[int]:
    """Heads of each attention call of one member's forward (so the stub can fake its records)."""
    model, _ = build_stack(name, config, members=1, seed=0)
    with torch.no_grad(), capture_attention() as records:
        model(torch.zeros(batch, config.context_length, dtype=torch.long))
    return [record.max_abs_logit.shape[-1] for record in records]


def _stub(model: torch.nn.Module, heads: list[int], batch: int):  # type: ignore[no-untyped-def]
    """A stand-in for capture_attention that records zeros: capture off, engine unchanged."""

    @contextmanager
    def no_capture() -> Iterator[list[AttentionRecord]]:
        records: list[AttentionRecord] = []
        yield records
        members = next(model.parameters()).shape[0]  # live members, after any divergence drop-out
        records.extend(AttentionRecord(torch.zeros(members * batch, h), torch.zeros(members * batch, h)) for h in heads)

    return no_capture


def _sweep_seconds(name: str, config: ModelConfig, train: TrainConfig, capture: bool) -> float:
    """Wall-clock of one in-process sweep of ``name`` over the default LR grid."""
    from trainstab.core.config import PAPER_LR_GRID

    model, multipliers = build_stack(name, config, members=len(PAPER_LR_GRID), seed=train.seed)
    corpus = load_corpus(None, config.context_length, config.vocab_size)
    heads = _shapes(name, config, train.batch_size)
    patch = mock.patch.object(engine, "capture_attention", _stub(model, heads, train.batch_size))
    started = time.perf_counter()
    if capture:
        engine.train_members(model, multipliers, list(PAPER_LR_GRID), corpus, train, config.context_length)
    else:
        with patch:
            engine.train_members(model, multipliers, list(PAPER_LR_GRID), corpus, train, config.context_length)
    return time.perf_counter() - started


def main() -> None:
    """Alternate capture on and off, print the medians and the overhead."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TrainConfig().steps)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="reference", help="reference, hf:<type> or package.module:factory")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    config, train = ModelConfig(), TrainConfig(steps=args.steps)
    probes = len([s for s in range(train.steps) if s % train.probe_every == 0 or s == train.steps - 1])
    on, off = [], []
    _sweep_seconds(args.model, config, TrainConfig(steps=5), capture=True)  # warm up imports and kernels
    for _ in range(args.repeats):
        off.append(_sweep_seconds(args.model, config, train, capture=False))
        on.append(_sweep_seconds(args.model, config, train, capture=True))
    on_s, off_s = statistics.median(on), statistics.median(off)
    overhead = on_s / off_s - 1
    print(f"{args.model}: {train.steps} steps x 7 LRs, {probes} probe steps, {args.repeats} repeats alternating")
    print(f"capture off: {off_s:6.2f} s  (runs: {', '.join(f'{s:.2f}' for s in off)})")
    print(f"capture on:  {on_s:6.2f} s  (runs: {', '.join(f'{s:.2f}' for s in on)})")
    per_probe_ms = (on_s - off_s) / probes * 1e3
    print(f"overhead: {overhead:+.1%} of the sweep (target <= {TARGET:.0%}), {per_probe_ms:.1f} ms a probe")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"model": args.model, "capture_on_seconds": on, "capture_off_seconds": off,
                       "overhead": overhead, "probe_steps": probes}, out, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
