"""``trainstab reproduce``: every finding at proxy scale, as PNGs and a Markdown summary.

The steps:

1. Check the output folder can be written (before minutes of training).
2. Run each finding of :data:`trainstab.paper.findings.FINDINGS` through one
   :class:`~trainstab.paper.findings.Lab`, so shared sweeps train once.
3. Draw one PNG per finding, then write ``summary.md`` (claim, measured
   numbers, whether the paper's direction held) and ``findings.json``.

Files already in the folder are kept as ``<name>.previous``, never overwritten.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainstab.core.config import SweepConfig, check_scope
from trainstab.core.environment import available_cores, environment
from trainstab.core.errors import TrainstabError
from trainstab.core.files import finite_or_none, json_text, keep_previous, write_text_atomically
from trainstab.paper.figures import draw
from trainstab.paper.findings import (
    FINDINGS,
    FULL_PLAN,
    QUICK_PLAN,
    FindingResult,
    FindingsPlan,
    Lab,
    applicable,
    plan_base,
)


@dataclass(frozen=True)
class Reproduction:
    """What a reproduce run measured and wrote."""

    results: tuple[FindingResult, ...]
    files: tuple[Path, ...]  # every file written, summary first
    elapsed_seconds: float
    seed: int
    quick: bool
    model: str = "reference"
    skipped: tuple[tuple[str, str], ...] = ()  # (finding, why it does not apply to the model)


def _verdict(held: bool | None) -> str:
    """The summary's word for a finding's outcome."""
    return {True: "held", False: "did not hold", None: "measured (no claim)"}[held]


def summary_markdown(reproduction: Reproduction, plan: FindingsPlan) -> str:
    """The Markdown summary: a table of verdicts, then one section per finding."""
    mode = "quick" if reproduction.quick else "full"
    lines = [
        "# trainstab reproduce: the paper's findings at proxy scale",
        "",
        f"Mode {mode}: {plan.steps} steps per run, widths {list(plan.widths)}, depths {list(plan.depths)}, "
        f"seed {reproduction.seed}, model {reproduction.model}; {reproduction.elapsed_seconds:.0f} s on this "
        "machine. Source: Wortsman et al. 2023, arXiv 2309.14322.",
        "",
        "| finding | paper's direction | at proxy scale |",
        "|---|---|---|",
    ]
    for r in reproduction.results:
        lines.append(f"| [{r.title}](#{r.key}) | {r.claim} | **{_verdict(r.held)}** |")
    if reproduction.skipped:
        lines += ["", f"Not run on {reproduction.model}:", ""]
        lines += [f"- {key}: {why}" for key, why in reproduction.skipped]
    for r in reproduction.results:
        lines += ["", f'<a id="{r.key}"></a>', f"## {r.title}", "", f"Claim: {r.claim}", "", f"Measured: {r.evidence}"]
        lines += ["", f"Verdict: **{_verdict(r.held)}**", "", f"![{r.title}]({r.key}.png)"]
    return "\n".join(lines) + "\n"


def _numbers(result: FindingResult) -> dict[str, Any]:
    """JSON of one finding (numbers and verdict)."""
    return {
        "title": result.title,
        "claim": result.claim,
        "held": result.held,
        "evidence": result.evidence,
        "numbers": result.numbers,
    }


def reproduce(
    out: Path,
    quick: bool = False,
    seed: int = 0,
    only: tuple[str, ...] = (),
    on_finding: Callable[[str, int, int], None] | None = None,
    on_sweep: Callable[[SweepConfig], None] | None = None,
    model: str = "reference",
) -> Reproduction:
    """Run the findings (all, or those named in ``only``) on ``model`` and write their PNGs and summary into ``out``.

    On a model other than the reference, the findings that flip one of the reference's switches are
    skipped and listed with the reason (naming one in ``only`` is an error).

    ``on_finding(key, index, total)`` is called before each finding and
    ``on_sweep(config)`` before each sweep that trains (progress). Raises
    :class:`TrainstabError` if ``out`` is not writable or ``only`` names an unknown finding.
    """
    unknown = [key for key in only if key not in FINDINGS]
    if unknown:
        raise TrainstabError(f"unknown finding(s) {', '.join(unknown)}; known: {', '.join(FINDINGS)}")
    plan = QUICK_PLAN if quick else FULL_PLAN
    base = plan_base(plan, seed, model)  # a malformed model name fails here
    check_scope(base)  # ... and options given to the reference
    model = base.model_name
    refused = [f"{key} {why}" for key in only if (why := applicable(key, model))]
    if refused:
        raise TrainstabError(f"finding {refused[0]}")
    if model != "reference":
        from trainstab.train.models import check_model  # builds the model: torch

        check_model(model, base.model, seed)  # a broken factory fails before the output folder is touched
    # 1. Writable output folder, before any training.
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".trainstab-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise TrainstabError(f"cannot write to the output folder {out}: {error.strerror or error}") from None
    started = time.perf_counter()
    lab = Lab(base, on_sweep=on_sweep)
    keys = [key for key in FINDINGS if (not only or key in only) and not applicable(key, model)]
    skipped = tuple((key, why) for key in FINDINGS if not only and (why := applicable(key, model)))
    # 2-3. Measure, then draw each finding as soon as it is measured.
    results, files = [], []
    for index, key in enumerate(keys):
        if on_finding is not None:
            on_finding(key, index, len(keys))
        result = FINDINGS[key](lab, plan)
        results.append(result)
        png = out / f"{key}.png"
        keep_previous(png)
        files.append(draw(result, png))
    reproduction = Reproduction(tuple(results), (), time.perf_counter() - started, seed, quick, model, skipped)
    summary = out / "summary.md"
    write_text_atomically(summary, summary_markdown(reproduction, plan))
    data = {
        "mode": "quick" if quick else "full",
        "seed": seed,
        "model": model,
        "elapsed_seconds": reproduction.elapsed_seconds,
        "skipped": dict(skipped),
        "environment": environment(seed, threads_per_stack=1, workers=available_cores()),
        "findings": {r.key: _numbers(r) for r in results},
    }
    findings_json = out / "findings.json"
    # default=str: a numpy scalar in a finding's numbers is written as text, not a crash after the whole run.
    write_text_atomically(findings_json, json_text(finite_or_none(data), default=str))
    files = [summary, findings_json, *files]
    return dataclasses.replace(reproduction, files=tuple(files))
