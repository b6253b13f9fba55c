"""Search for the paper's output-logit divergence at proxy scale: log Z drifting far negative, late, without
weight decay, and the loss degrading at high LR (Wortsman et al. 2023, section 3.2), which z-loss prevents.

    python benchmarks/output_logit_search.py [--steps 100000] [--budget-minutes 180] [--out DIR]

Trains the reference without weight decay and without z-loss, at a constant LR after a 1% warm-up, over the
grid below; every point is trained again with z-loss 1e-4 and with weight decay (independent, 1e-4) as
controls. The LRs of a point train together as one stacked model (members never mix), on one thread.

Grid (``--steps`` each): LRs 0.03, 0.1, 0.3, 1.0 x width 32, 64 x corpus (the bundled one, V = 512; a
Zipfian one over V = 4096 made by ``fixtures/make_corpus.py --vocab 4096``) x output-layer µParam (off; on:
the logits multiplied by 16 / width, µP's readout multiplier at base width 16) x control (none, z-loss 1e-4,
weight decay 1e-4). Points run in that order of priority: the uncontrolled runs first, the controls of
every point after.

Every 100 steps it logs, per LR: the mean, min and max of log Z over the batch's tokens, the min and max
output logit, the training loss, and the Frobenius norm of the unembedding. Each finished point is written to
``DIR/points/<name>-<steps>.json`` at once (the resumable cache: a rerun skips finished points); a point that would
not finish within ``--budget-minutes`` (estimated from the first one) is left for the next run. At the end it
writes ``DIR/summary.json`` (every finished point, of every ``--steps``) and one PNG per point and length
(log Z and loss against steps, with and without controls).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from trainstab.core.config import ModelConfig, TrainConfig
from trainstab.train.corpus import load_corpus

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt

from trainstab.core.files import json_text, write_atomically
from trainstab.train.losses import cross_entropy_with_log_z
from trainstab.train.optim import StackedAdamW
from trainstab.train.reference import ReferenceTransformer

LRS = (0.03, 0.1, 0.3, 1.0)
WIDTHS = (32, 64)
CORPORA = {"bundled-v512": 512, "zipf-v4096": 4096}
MUP_BASE_WIDTH = 16  # output µParam: logits x base / width
CONTROLS = {"none": {}, "z_loss": {"z_loss": 1e-4}, "weight_decay": {"weight_decay_mode": "independent"}}
LOG_EVERY = 100
CHUNK = 1000  # batches drawn this many steps at a time (1e5 steps at once would be 830 MB of indices)
SEED = 0


@dataclasses.dataclass(frozen=True)
class Point:
    """One stacked run: every LR of the grid at one width, corpus, output parameterization and control."""

    width: int
    corpus: str
    output_mup: bool
    control: str

    @property
    def name(self) -> str:
        """File name of the point's curves."""
        return f"w{self.width}-{self.corpus}-{'mup' if self.output_mup else 'sp'}-{self.control}"


def grid() -> list[Point]:
    """Every point, in the order they run: uncontrolled first."""
    return [
        Point(width, corpus, mup, control)
        for control in CONTROLS
        for corpus in reversed(CORPORA)  # the larger vocabulary first: the paper's setting is closer to it
        for width in WIDTHS
        for mup in (False, True)
    ]


def corpus_path(out: Path, corpus: str) -> Path | None:
    """The token file of ``corpus`` (None: the bundled one); the Zipfian one is generated once into ``out``."""
    if corpus == "bundled-v512":
        return None
    path = out / f"{corpus}.npy"
    if not path.exists():
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
        import make_corpus  # the bundled corpus's own recipe, over a larger vocabulary

        tokens = make_corpus.build(vocab_size=CORPORA[corpus])
        temporary = path.with_suffix(".tmp.npy")
        np.save(temporary, tokens)
        os.replace(temporary, path)
    return path


def train_point(point: Point, steps: int, out: Path) -> dict[str, Any]:
    """Train one point; its curves per LR, and whether and when each LR diverged."""
    vocab = CORPORA[point.corpus]
    model_config = ModelConfig(vocab_size=vocab, width=point.width, heads=point.width // 16)
    train = TrainConfig(
        steps=steps,
        warmup_fraction=0.01,
        lr_floor=max(LRS),  # at or above every peak: constant LR after the warm-up (see optim.schedule)
        z_loss=0.0,
        weight_decay_mode="none",
        seed=SEED,
    )
    train = dataclasses.replace(train, **CONTROLS[point.control])
    corpus = load_corpus(corpus_path(out, point.corpus), model_config.context_length, vocab)
    torch.set_num_threads(1)
    model = ReferenceTransformer(model_config, members=len(LRS), seed=SEED)
    params = dict(model.named_parameters())
    optimizer = StackedAdamW(params, model.lr_multipliers(), train)
    peak = torch.tensor(LRS)
    multiplier = MUP_BASE_WIDTH / point.width if point.output_mup else 1.0
    curves: list[list[dict[str, float]]] = [[] for _ in LRS]
    diverged: list[int | None] = [None] * len(LRS)
    started = time.perf_counter()
    for chunk_start in range(0, steps, CHUNK):
        batches = corpus.batches(
            min(CHUNK, steps - chunk_start), train.batch_size, model_config.context_length, SEED + chunk_start
        )
        for offset in range(batches.shape[0]):
            step = chunk_start + offset
            idx, targets = batches[offset, :, :-1], batches[offset, :, 1:]
            logits = model(idx) * multiplier  # (M, B, T, V)
            ce, log_z = cross_entropy_with_log_z(logits.reshape(-1, vocab), targets.reshape(-1).repeat(len(LRS)))
            ce, log_z = ce.view(len(LRS), -1), log_z.view(len(LRS), -1)
            loss = ce.mean(1) + train.z_loss * log_z.square().mean(1)
            for p in params.values():
                p.grad = None
            torch.nan_to_num(loss, nan=0.0, posinf=0.0).sum().backward()  # a diverged member stops mattering
            grad_norm = torch.nan_to_num(optimizer.gradient_norm(), nan=0.0)
            optimizer.step(step, peak, grad_norm)
            if step % LOG_EVERY == 0 or step == steps - 1:
                _log(curves, diverged, step, ce, log_z, logits, model)
            if all(d is not None for d in diverged):
                break
    return {
        "point": dataclasses.asdict(point),
        "lrs": list(LRS),
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "diverged_at": diverged,
        "curves": curves,
    }


@torch.no_grad()
def _log(
    curves: list[list[dict[str, float]]],
    diverged: list[int | None],
    step: int,
    ce: torch.Tensor,
    log_z: torch.Tensor,
    logits: torch.Tensor,
    model: ReferenceTransformer,
) -> None:
    """Append one row per LR still alive; mark the ones whose loss is no longer finite."""
    head = model.unembedding if model.unembedding is not None else model.embedding
    for member, rows in enumerate(curves):
        if diverged[member] is not None:
            continue
        loss = float(ce[member].mean())
        if not math.isfinite(loss):
            diverged[member] = step
            continue
        rows.append(
            {
                "step": step,
                "loss": loss,
                "log_z_mean": float(log_z[member].mean()),
                "log_z_min": float(log_z[member].min()),
                "log_z_max": float(log_z[member].max()),
                "logit_min": float(logits[member].min()),
                "logit_max": float(logits[member].max()),
                "unembedding_norm": float(head[member].norm()),
            }
        )


def plot(points: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """One PNG per uncontrolled point and length (``<point>-<steps>.png``): mean log Z and loss against steps
    per LR, controls dashed."""
    written = []
    for name, data in points.items():  # name: <point>-<steps>
        if data["point"]["control"] != "none":
            continue
        figure, (z_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4))
        for control, style in (("none", "-"), ("z_loss", "--"), ("weight_decay", ":")):
            other = points.get(name.replace("-none-", f"-{control}-"))
            if other is None:
                continue
            for index, (lr, rows) in enumerate(zip(other["lrs"], other["curves"], strict=True)):
                steps = [row["step"] for row in rows]
                label = f"lr {lr:g}" + ("" if control == "none" else f", {control}")
                color = f"C{index}"  # one colour per LR, one line style per control
                z_axis.plot(steps, [row["log_z_mean"] for row in rows], style, color=color, label=label)
                loss_axis.plot(steps, [row["loss"] for row in rows], style, color=color, label=label)
        z_axis.set(xlabel="step", ylabel="mean log Z", title=name)
        loss_axis.set(xlabel="step", ylabel="training loss", yscale="log")
        z_axis.legend(fontsize=6)
        path = out / f"{name}.png"
        figure.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def summarize(points: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per point and LR: log Z at the start, lowest and at the end; the loss at the end; divergence."""
    rows = {}
    for name, data in points.items():
        for lr, curve, diverged in zip(data["lrs"], data["curves"], data["diverged_at"], strict=True):
            if not curve:
                continue
            rows[f"{name} lr={lr:g}"] = {
                "log_z_start": curve[0]["log_z_mean"],
                "log_z_lowest": min(row["log_z_mean"] for row in curve),
                "log_z_end": curve[-1]["log_z_mean"],
                "loss_end": curve[-1]["loss"],
                "loss_lowest": min(row["loss"] for row in curve),
                "unembedding_norm_end": curve[-1]["unembedding_norm"],
                "diverged_at": diverged,
                "steps": curve[-1]["step"] + 1,
            }
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per run (default: %(default)s)")
    parser.add_argument("--budget-minutes", type=float, default=180.0, help="stop starting points after this")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/output_logit_search"), help="output folder")
    parser.add_argument("--only", default="", help="comma-separated point names to run (default: the grid)")
    args = parser.parse_args()
    (args.out / "points").mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + 60 * args.budget_minutes
    wanted = [p for p in grid() if not args.only or p.name in args.only.split(",")]
    print(f"seed={SEED} steps={args.steps} points={len(wanted)} lrs={list(LRS)} out={args.out}", flush=True)
    last_seconds = 0.0
    for point in wanted:
        path = args.out / "points" / f"{point.name}-{args.steps}.json"
        if path.exists():
            continue  # finished by an earlier run
        if time.monotonic() + last_seconds > deadline:
            print(f"budget reached: {point.name} and the rest left for the next run", flush=True)
            break
        data = train_point(point, args.steps, args.out)
        last_seconds = data["seconds"]
        write_atomically(path, json_text(data), keep=False)
        ends = ", ".join(
            f"lr {lr:g}: log Z {c[-1]['log_z_mean']:.2f} loss {c[-1]['loss']:.3f}" if c else f"lr {lr:g}: -"
            for lr, c in zip(data["lrs"], data["curves"], strict=True)
        )
        print(f"{point.name}: {data['seconds']:.0f} s; {ends}; diverged at {data['diverged_at']}", flush=True)
    # Every finished point of every length (``<name>-<steps>``): runs of another --steps stay in the summary.
    points = {path.stem: json.loads(path.read_text()) for path in sorted((args.out / "points").glob("*.json"))}
    summary = {"lrs": list(LRS), "runs": summarize(points)}
    write_atomically(args.out / "summary.json", json_text(summary), keep=False)  # ours: rewritten each run
    for png in plot(points, args.out):
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
