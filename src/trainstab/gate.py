"""The merge gate: a check's verdict plus its comparison with the committed baseline.

Shared by the pytest plugin and ``trainstab check``. Deciding and writing are
separate: :func:`gate` returns the files a run should write (a new baseline,
a rewritten one, an ``.obtained`` beside a mismatch) and :func:`write_files`
writes them, so under pytest-xdist the workers decide and the controller
alone writes. The baseline workflow follows pytest-regressions:

- no baseline: write it and fail with "commit this file";
- worse than the baseline beyond tolerance, or measured under another
  protocol: fail with baseline, measured and tolerance, and write the run's
  metrics to ``<check>.obtained.json`` beside it;
- ``update_failing`` rewrites the baselines that fail (or are missing),
  ``regen_all`` every one; a rewrite keeps the tolerances written in the old file;
- a baseline that cannot be read is an error naming the file, and is never rewritten.

Imports torch only through the sweep and check modules, when a check runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trainstab.baseline import (
    CHECK_METRICS,
    BaselineError,
    Comparison,
    baseline_path,
    compare,
    new_baseline,
    obtained_path,
    protocol_changes,
    read_baseline,
    recipe_changes,
    to_text,
)
from trainstab.errors import TrainstabError
from trainstab.files import WRITE_FAILED, check_folder_writable, shown
from trainstab.model_names import canonical_model_name

if TYPE_CHECKING:
    from trainstab.checks import CheckResult, Thresholds
    from trainstab.config import SweepConfig
    from trainstab.scaling import ScalingConfig, ScalingThresholds
    from trainstab.sweep import SweepResult


@dataclass(frozen=True)
class ModelUnderTest:
    """A model to check: its name, its factory's keyword options and ``key=value`` overrides of the run's config.

    ``ModelUnderTest("mypkg.models:build", options={"qk_norm": False})`` checks ``build(size, qk_norm=False)``,
    the same model as the name ``"mypkg.models:build[qk_norm=false]"``; options given here win over
    options written in the name.
    """

    name: str | None = None  # None: the run's --trainstab-model
    overrides: tuple[str, ...] = ()  # e.g. ("z_loss=0",): training keys, and the reference's switches
    id: str | None = None  # the test id; default: the model's canonical name plus overrides
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)  # the factory's keywords

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", dict(self.options))  # a private copy: the caller may mutate theirs
        if self.name is not None:
            canonical_model_name(self.name, self.options)  # a malformed name or option fails at collection

    def model_name(self, options: dict[str, Any]) -> str:
        """The canonical model this checks, the run's --trainstab-model standing in for a missing name."""
        return canonical_model_name(self.name or options["trainstab_model"], self.options)

    def __str__(self) -> str:
        if self.id is not None:
            return self.id
        named = self.name or "default-model"  # the run's model, not known here
        # Overrides as "+key=value": brackets belong to the model's own options, and a label pasted back as a
        # model name must not turn an override into an option.
        return canonical_model_name(named, self.options) + "".join(f"+{o}" for o in self.overrides)

    def label(self, options: dict[str, Any]) -> str:
        """The model's name in reports and baseline folders: its id, or the resolved model and overrides."""
        if self.id is not None or self.name is not None:
            return str(self)
        return str(dataclasses.replace(self, name=self.model_name(options), options={}))


def sweep_config(options: dict[str, Any], target: ModelUnderTest) -> SweepConfig:
    """The sweep a model is checked with: the run's options, then the model's own overrides."""
    from trainstab.config import PROFILES, SweepConfig, validate
    from trainstab.overrides import apply_overrides

    profile_steps, profile_lrs = PROFILES[options["trainstab_profile"]]
    base = SweepConfig(model_name=target.model_name(options), lrs=profile_lrs)
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=profile_steps))
    # Precedence: profile, then --trainstab-set / ini, then the model's own overrides, then explicit options.
    sweep = apply_overrides(base, [*options["trainstab_set"], *target.overrides])
    train_changes: dict[str, Any] = {"seed": options["trainstab_seed"]}
    if options["trainstab_steps"] is not None:
        train_changes["steps"] = options["trainstab_steps"]
    lrs = options["trainstab_lrs"] if options["trainstab_lrs"] is not None else sweep.lrs
    sweep = dataclasses.replace(
        sweep, train=dataclasses.replace(sweep.train, **train_changes), lrs=lrs, corpus=options["trainstab_corpus"]
    )
    validate(sweep)
    return sweep


def _bounds(options: dict[str, Any], kind: type[Any], names: dict[str, str]) -> Any:
    """``kind`` built from its defaults, with the fields named in ``names`` (option -> field) set where given."""
    return kind(**{field: options[key] for key, field in names.items() if options[key] is not None})


def thresholds(options: dict[str, Any]) -> Thresholds:
    """The battery's bounds with the run's overrides applied."""
    from trainstab.checks import Thresholds

    result: Thresholds = _bounds(
        options,
        Thresholds,
        {
            "trainstab_max_lr": "max_lr",
            "trainstab_attention_logit_bound": "attention_logit",
            "trainstab_log_z_bound": "log_z",
            "trainstab_ignore_params": "ignore_params",
            "trainstab_lr_sensitivity_bound": "lr_sensitivity",
            "trainstab_grad_rms_over_eps": "grad_rms_over_eps",
            "trainstab_spike_score_bound": "spike_score",
            "trainstab_report_only": "report_only",
        },
    )
    return result


def scaling_thresholds(options: dict[str, Any]) -> ScalingThresholds:
    """The scaling checks' bounds with the run's overrides applied (shared bounds come from the battery's options)."""
    from trainstab.scaling import ScalingThresholds

    result: ScalingThresholds = _bounds(
        options,
        ScalingThresholds,
        {
            "trainstab_target_params": "target_parameters",
            "trainstab_max_extrapolation": "max_extrapolation_decades",
            "trainstab_max_lr": "max_lr",
            "trainstab_lr_sensitivity_bound": "lr_sensitivity",
            "trainstab_grad_rms_over_eps": "grad_rms_over_eps",
        },
    )
    return result


def scaling_plan(options: dict[str, Any]) -> ScalingConfig:
    """The ladders of the scaling checks, with the run's ``widths`` and ``depths``."""
    from trainstab.scaling import ScalingConfig

    changes = {k: options[f"trainstab_{k}"] for k in ("widths", "depths") if options[f"trainstab_{k}"] is not None}
    return dataclasses.replace(ScalingConfig(), **changes)


@dataclass(frozen=True)
class BaselinePolicy:
    """Whether and how a run compares with (and writes) baselines."""

    folder: Path | None  # None: baselines off
    update_failing: bool = False  # rewrite missing, worse or incomparable baselines, and pass
    regen_all: bool = False  # rewrite every baseline, and pass

    @property
    def rewriting(self) -> bool:
        """Either flag is on."""
        return self.update_failing or self.regen_all


def policy_from(options: dict[str, Any]) -> BaselinePolicy:
    """The baseline policy of a run; a rewrite flag without a baseline folder is an error."""
    folder = options["trainstab_baselines"]
    update_failing = bool(options.get("trainstab_update_baseline"))
    regen_all = bool(options.get("trainstab_regen_all"))
    if folder is None and (update_failing or regen_all):
        flag = "update-baseline" if update_failing else "regen-all"
        raise TrainstabError(
            f"--{flag} / --trainstab-{flag} needs a baseline folder: in pytest set trainstab_baselines = <folder> "
            "in the ini file or pass --trainstab-baselines=<folder>; with trainstab check pass --baselines <folder>"
        )
    if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
        raise TrainstabError(
            f"the baseline folder {folder} (trainstab_baselines / --trainstab-baselines) is a file; give a folder"
        )
    if folder is not None and (update_failing or regen_all):  # they will write: find out now, not after training
        flag = "--trainstab-update-baseline" if update_failing else "--trainstab-regen-all"
        check_folder_writable(Path(folder), f"{flag} rewrites baselines, but the baseline folder")
    return BaselinePolicy(Path(folder) if folder is not None else None, update_failing, regen_all)


def baseline_header(options: dict[str, Any]) -> list[str]:
    """Lines for the top of a run: the baseline folder, and a warning when its baselines were recorded elsewhere."""
    from trainstab.baseline import environment_differences, recorded_environments
    from trainstab.environment import light_environment

    folder = options["trainstab_baselines"]
    if folder is None:
        return []
    environments = recorded_environments(Path(folder))
    mode = " (rewriting all)" if options.get("trainstab_regen_all") else ""
    mode = mode or (" (rewriting failing ones)" if options.get("trainstab_update_baseline") else "")
    lines = [f"baselines {shown(Path(folder))}: {len(environments)} file(s){mode}"]
    here = light_environment(options["trainstab_seed"])
    differences = sorted({d for recorded in environments.values() for d in environment_differences(recorded, here)})
    if differences:
        lines.append(
            "WARNING: baselines were recorded in another environment (" + "; ".join(differences) + "): numbers "
            "may move within tolerance; if they drift, refresh the baselines on main with --trainstab-regen-all"
        )
    return lines


@dataclass(frozen=True)
class FileWrite:
    """A file the run should write (on the pytest-xdist controller, or in the CLI's process)."""

    path: str
    text: str  # "" for "clear"
    reason: Literal["new", "updated", "regenerated", "obtained", "clear"]  # clear: remove a stale .obtained file


#: ``off``: no baseline folder; ``new``: recorded now; ``passed``: within tolerance; ``worse``: beyond it;
#: ``incomparable``: measured under another protocol; ``updated``/``regenerated``: rewritten by a flag;
#: ``error``: the file cannot be used; ``not gated``: a check without baselines (the scaling checks).
BaselineStatus = Literal[
    "off", "new", "passed", "worse", "incomparable", "updated", "regenerated", "error", "not gated"
]


@dataclass(frozen=True)
class Gated:
    """A check's verdict on one model together with its baseline comparison."""

    label: str  # the model's label
    result: CheckResult
    status: BaselineStatus
    baseline: str | None  # the baseline file, when baselines are on
    comparisons: tuple[Comparison, ...] = ()  # every gated number, worse or not
    message: str = ""  # why the baseline part failed or what it did
    writes: tuple[FileWrite, ...] = ()
    recorded: dict[str, Any] | None = None  # the baseline's metrics as read before this run (for plots)
    baseline_fails: bool = False  # the baseline part fails the test

    @property
    def passed(self) -> bool:
        """The check passed its bound (or is report-only) and its baseline."""
        return (self.result.passed or not self.result.asserted) and not self.baseline_fails

    @property
    def verdict(self) -> str:
        """``pass``, ``FAIL``, or ``warn``: a report-only check over its bound or worse than its baseline."""
        if not self.passed:
            return "FAIL"
        return "warn" if self.status == "worse" else self.result.verdict

    @property
    def failure(self) -> str:
        """Why it failed ("" when it passed): the check's own message, then the baseline's."""
        parts = [self.result.message] if not self.result.passed and self.result.asserted else []
        return "\n".join([*parts, self.message] if self.baseline_fails else parts)


def ungated(label: str, result: CheckResult) -> Gated:
    """A verdict with no baseline part (baselines off, or a check that has none)."""
    return Gated(label, result, "not gated", None)


def gate(
    label: str,
    check: str,
    result: CheckResult,
    sweep: SweepResult,
    bounds: Thresholds,
    policy: BaselinePolicy,
) -> Gated:
    """Hold ``result`` to the committed baseline of ``check`` on ``label``; decide what to write.

    A baseline file that cannot be used fails the check (status ``error``) with the file and the problem,
    and is never written over.
    """
    if policy.folder is None:
        return Gated(label, result, "off", None)
    if check not in CHECK_METRICS:
        return ungated(label, result)
    path = baseline_path(policy.folder, label, check)
    obtained = obtained_path(path)
    # A .obtained file is this tool's output, not the user's: once the baseline is settled it is stale.
    clear = (FileWrite(str(obtained), "", "clear"),) if obtained.exists() else ()
    try:
        old = read_baseline(path, check, label)
    except BaselineError as error:
        return Gated(label, result, "error", str(path), message=str(error), baseline_fails=True)
    current = new_baseline(label, check, sweep, bounds, old.tolerances if old is not None else None)
    text = to_text(current)
    rewrite: Literal["updated", "regenerated"] = "regenerated" if policy.regen_all else "updated"
    if old is None:
        write = FileWrite(str(path), text, "new")
        if policy.rewriting:
            return Gated(label, result, "new", str(path), message=f"recorded {shown(path)}", writes=(write, *clear))
        return Gated(
            label, result, "new", str(path),
            message=f"no baseline yet for {label} / {check}: wrote {shown(path)} from this run; review and commit "
            f"this file (git add {shown(path)}), then rerun",
            writes=(write,), baseline_fails=True,
        )  # fmt: skip
    recorded = old.data["metrics"]
    changes = protocol_changes(old, current)
    comparisons = tuple(compare(old, current)) if not changes else ()
    worse = [row for row in comparisons if row.worse]
    if changes or worse:
        if policy.rewriting:
            why = "protocol changed" if changes else f"{len(worse)} number(s) were worse"
            return Gated(
                label, result, rewrite, str(path), comparisons, f"rewrote {shown(path)} ({why})",
                (FileWrite(str(path), text, rewrite), *clear), recorded,
            )  # fmt: skip
        # A report-only check's worse numbers are shown, not failed; a baseline it cannot compare with still fails.
        return Gated(
            label, result, "incomparable" if changes else "worse", str(path), comparisons,
            _failure_message(path, obtained, changes, worse, recipe_changes(old, current)),
            (FileWrite(str(obtained), text, "obtained"),), recorded, baseline_fails=result.asserted or bool(changes),
        )  # fmt: skip
    if policy.regen_all and path.read_text() != text:
        return Gated(
            label, result, "regenerated", str(path), comparisons, f"regenerated {shown(path)}",
            (FileWrite(str(path), text, "regenerated"), *clear), recorded,
        )  # fmt: skip
    return Gated(label, result, "passed", str(path), comparisons, writes=clear, recorded=recorded)


def _failure_message(path: Path, obtained: Path, changes: list[str], worse: list[Comparison], recipe: list[str]) -> str:
    """Why a baseline fails: the protocol changes, or each worse number with baseline, measured and tolerance."""
    if changes:
        lines = [f"baseline {shown(path)} was measured under another protocol, so it cannot be compared:"]
        lines += [f"  {change}" for change in changes]
        lines.append(
            "Run with the baseline's settings, or re-record it with --trainstab-update-baseline and commit it "
            f"(this run's metrics are in {shown(obtained)})"
        )
        return "\n".join(lines)
    lines = [f"worse than the baseline {shown(path)}:"]
    lines += [f"  {row.describe()}" for row in worse]
    if recipe:
        lines.append("changed since the baseline: " + "; ".join(recipe))
    lines.append(
        f"This run's metrics are in {shown(obtained)}. If the change is intended, refresh the baseline with "
        "--trainstab-update-baseline and commit it"
    )
    return "\n".join(lines)


def write_files(writes: list[FileWrite] | tuple[FileWrite, ...]) -> list[str]:
    """Write (or clear) the files a run decided on, atomically; returns one line per file for the summary.

    A baseline is replaced in place (git keeps its history); the only file ever
    removed is a stale ``.obtained`` one. A file that cannot be written is
    reported in its line, not raised: the run's verdicts still stand.
    """
    from trainstab.files import write_atomically

    done = []
    for write in writes:
        path = Path(write.path)
        try:
            if write.reason == "clear":
                path.unlink(missing_ok=True)
                done.append(f"removed {shown(path)} (stale: its baseline now passes or was rewritten)")
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, write.text, keep=False)
        except OSError as error:
            done.append(f"{WRITE_FAILED} {shown(path)} ({error.strerror or error}); check that folder")
            continue
        action = {
            "new": "new baseline, commit this file",
            "updated": "baseline rewritten by --trainstab-update-baseline",
            "regenerated": "baseline rewritten by --trainstab-regen-all",
            "obtained": "this run's metrics beside a failing baseline; not for committing",
        }[write.reason]
        done.append(f"wrote {shown(path)} ({action})")
    return done
