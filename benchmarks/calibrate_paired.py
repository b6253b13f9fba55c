"""Calibrate the paired rule of ``--trainstab-against`` (trainstab.checks.head_vs_base) on the zoo.

    python benchmarks/calibrate_paired.py [--profiles default,quick] [--factors 0.5,1,1.5,2] [--cache DIR]

Three kinds of comparison, each a base and a head trained on 3 seeds with the same protocol:

- **unchanged, other kernels**: every zoo model against itself, the base under this machine's CPU kernels and
  the head under ``ATEN_CPU_CAPABILITY=avx2`` (seeds 0-2 both): the rounding noise of a harmless change of
  arithmetic order, which chaotic high-LR training amplifies;
- **unchanged, other seeds**: every zoo model against itself, the base on seeds 0-2 and the head on seeds 3-5
  (default profile): a harmless change that re-draws the initialisation and the data order, the harshest null
  (in a real run both sides share the seeds);
- **regressions**: a stable zoo model as the base and the same code path with a known problem as the head
  (qk-norm removed, a 10x init, a 30x output head), seeds 0-2.

Printed per spread factor: per check, how many unchanged cases the head fails (the target is 0) and how many
regressions it catches; then, at the chosen factor, each regression's worst difference against its band. The
sweeps come from ``benchmarks/calibrate.py``'s cache (keyed by the zoo's code, torch and the kernels, not by
trainstab's code), so a rerun on the same machine reads them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "benchmarks"))

import calibrate  # noqa: E402  (the zoo, its sweeps and their cache)
from calibrate import ZOO, ZooModel  # noqa: E402

from trainstab.checks.battery import BATTERY, Thresholds  # noqa: E402
from trainstab.checks.head_vs_base import PairedRule, compare  # noqa: E402
from trainstab.core.results import SweepResult  # noqa: E402

#: (stable base, head with a problem) from one code path: a change a pull request could make.
REGRESSIONS = (
    ("reference", "reference qk_layernorm=false"),
    ("reference", "reference init_scale=10"),
    ("gpt_models:pre_ln_qk_norm", "gpt_models:pre_ln"),
    ("gpt_models:llama_style_qk_norm", "gpt_models:llama_style"),
    ("gpt_models:tied_gpt2_init_qk_norm", "gpt_models:tied_gpt2_init"),
    ("gpt_models:pre_ln_qk_norm", "gross_models:head_init_x30"),
    ("attention_models:mingpt_qk_norm", "attention_models:mingpt"),
    ("hf:qwen3", "hf:qwen2"),
    ("hf:olmo2", "hf:llama"),
    ("hf:gemma3_text", "hf:gemma2"),
)
#: How large a regression the rule catches: the reference against itself with its weights' init scaled up.
INIT_DOSES = (1.5, 2.0, 3.0, 5.0)
#: The checks a regression of each kind must fail against its base (as the battery's CAUSE_CHECKS).
CAUGHT_BY = {"attention growth": ("attention_logits",), "output logits": ("log_z",)}
BASE_SEEDS, SHIFTED_SEEDS = (0, 1, 2), (3, 4, 5)


def by_label(label: str) -> ZooModel:
    """The zoo model of that label."""
    return next(model for model in ZOO if model.label == label)


def sweeps(model: ZooModel, profile: str, seeds: tuple[int, ...], cache: Path) -> list[SweepResult]:
    """The model's sweeps at those seeds under this process's kernels (trained once, then read from the cache)."""
    return [calibrate.measure(model, profile, seed, cache).sweep for seed in seeds]


def emit_paths(profiles: list[str], cache: Path) -> None:
    """(In the child of another kernel set.) Make sure every zoo sweep at seeds 0-2 is cached; print the files."""
    found = {}
    for profile in profiles:
        for model in ZOO:
            for seed in BASE_SEEDS:
                calibrate.measure(model, profile, seed, cache)
                key = calibrate._cache_key(model, profile, seed, None, None)
                found[f"{model.label}|{profile}|{seed}"] = str(cache / f"{key}.json")
    print(json.dumps(found))


def other_kernels(profiles: list[str], cache: Path, kernels: str = "avx2") -> dict[str, Path]:
    """The cache files of every zoo sweep at seeds 0-2 under ``ATEN_CPU_CAPABILITY=kernels`` (a child process)."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": kernels}
    command = [sys.executable, __file__, "--emit-paths", "--profiles", ",".join(profiles), "--cache", str(cache)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return {key: Path(path) for key, path in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def loaded(path: Path, like: SweepResult) -> SweepResult:
    """A cached sweep read into ``like``'s config."""
    return calibrate._from_dict(json.loads(path.read_text()), replace(like, runs=()))


def _ratio(result) -> float:  # type: ignore[no-untyped-def]
    """The largest difference over its band in a comparison (above 1: worse); 0 when nothing was compared."""
    ratios = [d.difference / d.band for d in result.differences if d.band > 0 and d.difference == d.difference]
    ratios += [math.inf for d in result.differences if d.band == 0 and d.difference > 0]
    return max(ratios, default=0.0)


def main() -> None:
    """Print the tables of the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="default,quick")
    parser.add_argument("--factors", default="0,0.5,1,1.5,2")
    parser.add_argument("--cache", type=Path, default=REPOSITORY / ".calibration")
    parser.add_argument("--no-seed-shift", action="store_true", help="skip the seeds 3-5 null (trains 84 sweeps)")
    parser.add_argument("--emit-paths", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    profiles = args.profiles.split(",")
    if args.emit_paths:
        emit_paths(profiles, args.cache)
        return
    avx2 = other_kernels(profiles, args.cache)
    cases: list[tuple[str, str, str, list[SweepResult], list[SweepResult]]] = []  # kind, label, profile, base, head
    for profile in profiles:
        for model in ZOO:
            base = sweeps(model, profile, BASE_SEEDS, args.cache)
            head = [
                loaded(avx2[f"{model.label}|{profile}|{s}"], sweep) for s, sweep in zip(BASE_SEEDS, base, strict=True)
            ]
            cases.append(("unchanged, avx2 kernels", model.label, profile, base, head))
            if profile == "default" and not args.no_seed_shift:
                shifted = sweeps(model, profile, SHIFTED_SEEDS, args.cache)
                cases.append(("unchanged, seeds 3-5", model.label, profile, base, shifted))
        for base_label, head_label in REGRESSIONS:
            base = sweeps(by_label(base_label), profile, BASE_SEEDS, args.cache)
            head = sweeps(by_label(head_label), profile, BASE_SEEDS, args.cache)
            cases.append(("regression", f"{base_label} -> {head_label}", profile, base, head))
    bounds = Thresholds()
    factors = [float(f) for f in args.factors.split(",")]
    print(f"paired rule on the zoo: {len(cases)} comparisons ({', '.join(profiles)}), 3 seeds a side")
    for factor in factors:
        rule = PairedRule(spread_factor=factor)
        print(f"\n=== spread factor {factor:g} ===")
        print(f"{'check':<18} {'unchanged failing':>18} {'regressions caught (must / any)':>32}")
        for name, check in BATTERY.items():
            unchanged = [c for c in cases if c[0] != "regression"]
            failing = [c for c in unchanged if compare(check, c[3], c[4], bounds, rule, "base").status == "worse"]
            regressions = [c for c in cases if c[0] == "regression"]
            must = [c for c in regressions if name in CAUGHT_BY[by_label(c[1].split(" -> ")[1]).problem or ""]]
            caught_must = sum(compare(check, c[3], c[4], bounds, rule, "base").status == "worse" for c in must)
            caught_any = sum(compare(check, c[3], c[4], bounds, rule, "base").status == "worse" for c in regressions)
            print(f"{name:<18} {len(failing):>8} of {len(unchanged):<8} {caught_must:>11} of {len(must):<3} / "
                  f"{caught_any} of {len(regressions)}")  # fmt: skip
            for kind, label, profile, base, head in failing:
                worst = compare(check, base, head, bounds, rule, "base").worst
                print(f"    {kind}: {label} [{profile}]: {worst.describe() if worst else '-'}")
    rule = PairedRule()
    print(f"\n=== margins at the default factor ({rule.spread_factor:g}): difference / band, each case's largest ===")
    print(f"{'check':<18} {'worst unchanged':>16} {'mildest regression it must catch':>34}")
    for name, check in BATTERY.items():
        unchanged = [_ratio(compare(check, c[3], c[4], bounds, rule, "base")) for c in cases if c[0] != "regression"]
        must = [
            _ratio(compare(check, c[3], c[4], bounds, rule, "base"))
            for c in cases
            if c[0] == "regression" and name in CAUGHT_BY[by_label(c[1].split(" -> ")[1]).problem or ""]
        ]
        mildest = f"{min(must):.3g}" if must else "-"
        print(f"{name:<18} {max(unchanged, default=0.0):>16.3g} {mildest:>34}")
    print(f"\n=== how large a regression it catches: reference against init_scale=k, seeds 0-2, {profiles[0]} ===")
    reference = by_label("reference")
    base = sweeps(reference, profiles[0], BASE_SEEDS, args.cache)
    for dose in INIT_DOSES:
        head_model = ZooModel("reference", (f"init_scale={dose:g}",), "reference", "output logits")
        head = sweeps(head_model, profiles[0], BASE_SEEDS, args.cache)
        failing = []
        for name, check in BATTERY.items():
            result = compare(check, base, head, bounds, rule, "base")
            if result.status == "worse":
                failing.append(f"{name} ({_ratio(result):.2g}x its band)")
        print(f"init_scale={dose:g}: {', '.join(failing) or 'no check worse than the base'}")
    print(f"\n=== regressions at the default factor ({rule.spread_factor:g}): the worst difference per check ===")
    for kind, label, profile, base, head in cases:
        if kind != "regression":
            continue
        print(f"{label} [{profile}]")
        for name, check in BATTERY.items():
            result = compare(check, base, head, bounds, rule, "base")
            worst = result.worst
            print(f"    {name:<17} {result.status:<7} {worst.describe() if worst else '-'}")


if __name__ == "__main__":
    main()
