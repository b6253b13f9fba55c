"""Benchmark: the Ray executor against the local one on this machine, on the same work.

    python benchmarks/bench_executor.py [--json out.json]

Starts the Ray trainstab starts (this machine's cores, loopback only), then times, local first and Ray second,
in the same run, with as many local worker processes as Ray has CPUs:

- the reference's default sweep (7 LRs: two stacks of 200 steps);
- a width ladder 32,48,64 at the default steps (six stacks, all in flight at once on either executor);
- a fuzz exploration of 16 points (four Ray tasks of four points).

It checks that each pair gave the same numbers, and prints the wall-clock of each, their ratio, the Ray start-up,
the time of one stack on one core, and the bytes a stack's task sends and gets back (the data a cluster moves).
Those last two are what the README's capacity estimate for a nightly battery rests on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import sys
import time
from pathlib import Path

from trainstab.core.config import SweepConfig
from trainstab.core.ladder import run_ladder, width_configs
from trainstab.explore.fuzz import explore
from trainstab.explore.strategies import stability_region
from trainstab.train.ray_executor import ray_module
from trainstab.train.sweep import run_sweep, run_sweeps, stacks, train_stack


def _timed(label: str, work, rows: list[dict[str, object]]) -> object:
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    rows.append({"work": label, "seconds": round(seconds, 2)})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args()
    os.environ.pop("RAY_ADDRESS", None)  # this machine's Ray, not a cluster's

    started = time.perf_counter()
    ray = ray_module()
    ray_start = time.perf_counter() - started
    cpus = int(ray.cluster_resources()["CPU"])
    base = SweepConfig(workers=cpus)
    print(f"seed={base.train.seed} cpus={cpus} ray start-up {ray_start:.1f} s", flush=True)

    region = stability_region(lr=(1e-3, 1.0), qk_layernorm=(True, False))
    work = {
        "default sweep (2 stacks)": lambda config: run_sweep(config).runs,
        "width ladder 32,48,64 (6 stacks)": lambda config: [
            rung.sweep.runs for rung in run_ladder("width", width_configs(config, (32, 48, 64)), run_sweeps).rungs
        ],
        "fuzz, 16 points": lambda config: explore(region, budget=16, base=dataclasses.replace(config, lrs=(1e-2,))),
    }
    rows: list[dict[str, object]] = []
    for label, run in work.items():
        local = _timed(f"{label}, local", lambda run=run: run(base), rows)
        on_ray = _timed(f"{label}, ray", lambda run=run: run(dataclasses.replace(base, executor="ray")), rows)
        same = local == on_ray
        rows[-1]["same numbers"] = same
        rows[-1]["ray / local"] = round(float(rows[-1]["seconds"]) / float(rows[-2]["seconds"]), 2)  # type: ignore[arg-type]
        print(
            f"{label:<34} local {rows[-2]['seconds']:>6.1f} s   ray {rows[-1]['seconds']:>6.1f} s   "
            f"ratio {rows[-1]['ray / local']:.2f}   same numbers: {same}",
            flush=True,
        )
        if not same:
            print("the executors disagree: a bug", file=sys.stderr)
            return 1

    first_stack = stacks(base.lrs)[0]
    started = time.perf_counter()
    members = train_stack(base, first_stack)
    one_stack = time.perf_counter() - started
    sent = len(pickle.dumps((base, first_stack)))
    received = len(pickle.dumps(members))
    print(
        f"one stack of {len(first_stack)} LRs x {base.train.steps} steps on one core: {one_stack:.1f} s; "
        f"a task sends {sent / 1024:.1f} KiB and gets back {received / 1024:.0f} KiB"
    )
    if args.json is not None:
        measured = {"ray_start_seconds": ray_start, "one_stack_seconds": one_stack, "sent_bytes": sent}
        args.json.write_text(json.dumps({**measured, "received_bytes": received, "rows": rows}, indent=2) + "\n")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
