"""Benchmark: a 10-model battery run twice with the persistent sweep cache, as CI reruns it.

    python benchmarks/bench_cache.py [--profile quick|default] [--workers 2]

Writes a throwaway project (ten variants of the reference, the whole battery on each), runs
``pytest -n <workers> --trainstab-cache`` in it twice, one run after the other, and prints the
wall-clock of each and their ratio. The goal: the second run, on unchanged models, takes at most
10% of the first. The cache folder starts empty; nothing outside a temporary folder is written.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = [
    (),
    ("init_scale=0.5",),
    ("init_scale=2.0",),
    ("z_loss=0",),
    ("warmup_fraction=0.2",),
    ("norm_placement=post",),
    ("eps=1e-15",),
    ("weight_decay_mode=coupled",),
    ("beta2=0.99",),
    ("grad_clip=0.5",),
]

TEST = """
from trainstab.testing import ModelUnderTest, parametrize_with_checks

VARIANTS = {variants!r}


@parametrize_with_checks([ModelUnderTest("reference", overrides) for overrides in VARIANTS])
def test_stability(model, check):
    check(model)
"""


def timed_run(project: Path, workers: int) -> tuple[float, str]:
    """One pytest run in ``project``: seconds, and the trainstab cache line of its summary."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-q", "-n", str(workers), "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"pytest failed to run ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("trainstab: cache")]
    return elapsed, lines[-1] if lines else "(no cache line)"


def main() -> None:
    """Run the battery twice and print both times and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=("quick", "default", "thorough"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "test_battery.py").write_text(TEST.format(variants=VARIANTS))
        (project / "pytest.ini").write_text(
            f"[pytest]\ntrainstab_cache = sweep-cache\ntrainstab_profile = {args.profile}\naddopts = --dist loadgroup\n"
        )
        first, first_line = timed_run(project, args.workers)
        second, second_line = timed_run(project, args.workers)
    print(f"{len(VARIANTS)} models, whole battery, profile {args.profile}, pytest -n {args.workers}")
    print(f"first run (empty cache):  {first:7.1f} s   {first_line}")
    print(f"second run (same models): {second:7.1f} s   {second_line}")
    print(f"second / first: {second / first:.1%} (goal: at most 10%)")


if __name__ == "__main__":
    main()
