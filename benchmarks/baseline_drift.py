"""How much of each baseline tolerance does another CPU use up? A measurement behind baseline.TOLERANCES.

A baseline is recorded on one machine (main's CI) and compared on others.
Another CPU runs other float kernels, and at high LR training is chaotic, so
metrics move. This records the reference model's baselines under each CPU
kernel set PyTorch can run here (ATEN_CPU_CAPABILITY: default, avx2,
avx512: a stand-in for other CPUs), compares every pair, and prints, per
metric, the largest share of its tolerance a move in the bad direction used
(1.0 = the check would fail). Moves in the good direction count as 0.

    python benchmarks/baseline_drift.py [--steps 200]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from trainstab.gate.baseline import TOLERANCES

CAPABILITIES = ("default", "avx2", "avx512")


def measure(capability: str, steps: int, folder: Path) -> dict[tuple[str, str | None], float | None]:
    """The reference's gated metrics under one kernel set: {(metric, lr): value}, from a fresh baseline."""
    baselines = folder / capability
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    command = [sys.executable, "-m", "trainstab", "check", "--steps", str(steps), "--no-progress"]
    subprocess.run([*command, "--baselines", str(baselines)], env=env, capture_output=True, check=False)
    values: dict[tuple[str, str | None], float | None] = {}
    for path in sorted(baselines.glob("*/*.json")):
        for metric, value in json.loads(path.read_text())["metrics"].items():
            if metric not in TOLERANCES:
                continue
            for lr, entry in value.items() if isinstance(value, dict) else [(None, value)]:
                values[(metric, lr)] = None if entry is None else float(entry)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = {cap: measure(cap, args.steps, Path(folder)) for cap in CAPABILITIES}
    worst: dict[str, tuple[float, str]] = {}
    for recorded, measured in itertools.permutations(CAPABILITIES, 2):
        for (metric, lr), base in runs[recorded].items():
            value = runs[measured].get((metric, lr))
            if base is None or value is None:
                continue
            tolerance = TOLERANCES[metric]
            move = value - base if tolerance.worse == "higher" else base - value
            allowed = tolerance.allowed(base)
            used = max(0.0, move) / allowed if allowed else (0.0 if move <= 0 else float("inf"))
            if used >= worst.get(metric, (-1.0, ""))[0]:
                where = f" lr={lr}" if lr is not None else ""
                worst[metric] = (used, f"{recorded}->{measured}{where}: {base:.4g} -> {value:.4g}")
    print(f"reference model, {args.steps} steps, kernel sets {', '.join(CAPABILITIES)} (every ordered pair)")
    print(f"{'metric':<22} {'tolerance':<30} {'worst use':>9}  where")
    for metric, (used, where) in sorted(worst.items()):
        t = TOLERANCES[metric]
        print(f"{metric:<22} {f'rel {t.rel:g} + abs {t.abs:g} ({t.worse})':<30} {used:>9.2f}  {where}")


if __name__ == "__main__":
    main()
