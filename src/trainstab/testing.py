"""The pytest side of the battery: ``parametrize_with_checks`` and shared sweeps.

In the style of scikit-learn's estimator checks::

    from trainstab.testing import parametrize_with_checks

    @parametrize_with_checks(["reference", "mypkg.models:build"])
    def test_training_stability(model, check):
        check(model)

yields one test per (model, check). A check trains nothing itself: it asks
for the model's sweep, which is computed once per session and shared by
every check and every pytest-xdist worker (a file lock on a cache keyed by
model, config, corpus and versions), then holds one number to one bound.
torch is imported only when a check runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from trainstab.plugin import current_item, options_of, session_folder

if TYPE_CHECKING:
    from trainstab.checks import CheckResult, Thresholds
    from trainstab.config import SweepConfig
    from trainstab.scaling import Evidence, ScalingThresholds
    from trainstab.sweep import SweepResult

_Bounds = TypeVar("_Bounds")

#: The battery's checks, in report order (trainstab.checks.BATTERY holds the code).
CHECK_NAMES = (
    "no_divergence",
    "attention_logits",
    "log_z",
    "lr_sensitivity",
    "grad_rms_vs_eps",
    "loss_spikes",
    "parameters_move",
)
#: Checks across a ladder of sizes (trainstab.scaling.SCALING_CHECKS holds the code); opt in with
#: ``parametrize_with_checks(models, checks=SCALING_CHECK_NAMES)``. They train the width and depth ladders.
SCALING_CHECK_NAMES = ("attention_forecast", "eps_forecast", "sensitivity_scaling", "lr_transfer", "coordinates")


@dataclass(frozen=True)
class ModelUnderTest:
    """A model to check: its name and any ``key=value`` overrides of the run's config."""

    name: str | None = None  # None: the run's --trainstab-model
    overrides: tuple[str, ...] = ()  # e.g. ("qk_layernorm=false",)
    id: str | None = None  # the test id; default: name plus overrides

    def __str__(self) -> str:
        if self.id is not None:
            return self.id
        base = self.name or "default-model"
        return base + "".join(f"[{o}]" for o in self.overrides)


class StabilityCheck:
    """One check of the battery, callable on a model as ``check(model)``."""

    def __init__(self, name: str) -> None:
        if name not in CHECK_NAMES + SCALING_CHECK_NAMES:
            known = ", ".join(CHECK_NAMES + SCALING_CHECK_NAMES)
            raise ValueError(f"unknown trainstab check {name!r}; known: {known}")
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __call__(self, model: ModelUnderTest | str) -> None:
        """Run the check on ``model``; fails the test with the check's message."""
        from trainstab.errors import TrainstabError

        item = current_item()
        if item is None:
            raise RuntimeError("trainstab checks run inside a pytest test with the trainstab plugin active")
        target = model if isinstance(model, ModelUnderTest) else ModelUnderTest(model)
        try:
            config = sweep_config(item.config, target)
            result = self._verdict(item.config, config)
        except TrainstabError as error:
            pytest.fail(f"trainstab: {target}: {error}", pytrace=False)
        item.user_properties.append(
            (
                "trainstab",
                {
                    "model": str(target),
                    "check": self.name,
                    "order": (CHECK_NAMES + SCALING_CHECK_NAMES).index(self.name),
                    "value": result.value,
                    "bound": result.bound,
                    "passed": result.passed,
                    "lr": result.lr,
                    "seed": config.train.seed,
                },
            )
        )
        if not result.passed:
            pytest.fail(f"{self.name} failed for {target} (seed {config.train.seed}): {result.message}", pytrace=False)

    def _verdict(self, pytest_config: pytest.Config, sweep: SweepConfig) -> CheckResult:
        """Run this check on the model's sweep (battery) or its ladders (scaling checks)."""
        if self.name in SCALING_CHECK_NAMES:
            from trainstab.scaling import SCALING_CHECKS

            return SCALING_CHECKS[self.name](evidence(pytest_config, sweep), scaling_thresholds(pytest_config))
        from trainstab.checks import BATTERY

        return BATTERY[self.name](cached_sweep(pytest_config, sweep), thresholds(pytest_config))


def parametrize_with_checks(
    models: list[ModelUnderTest | str] | None = None, checks: list[str] | None = None
) -> pytest.MarkDecorator:
    """One test per (model, check): parametrizes ``model`` and ``check``.

    ``models`` defaults to the run's ``--trainstab-model``; ``checks`` to the
    whole battery. Test ids read ``<model>-<check>``.
    """
    targets = [m if isinstance(m, ModelUnderTest) else ModelUnderTest(m) for m in (models or [ModelUnderTest()])]
    names = list(checks) if checks is not None else list(CHECK_NAMES)
    return pytest.mark.parametrize(("model", "check"), [case(target, name) for target in targets for name in names])


def case(model: ModelUnderTest | str, check: str, *marks: pytest.MarkDecorator) -> Any:
    """One (model, check) parameter set for ``@pytest.mark.parametrize(("model", "check"), ...)``.

    It carries the ``trainstab`` marker and one xdist group per model: with
    ``--dist loadgroup`` every check of a model runs on the worker that trains
    its sweep, instead of a second worker waiting on the cache lock.
    """
    target = model if isinstance(model, ModelUnderTest) else ModelUnderTest(model)
    group = pytest.mark.xdist_group(str(target))
    return pytest.param(
        target, StabilityCheck(check), id=f"{target}-{check}", marks=[pytest.mark.trainstab, group, *marks]
    )


def expect_failure(model: ModelUnderTest | str, check: str, reason: str) -> Any:
    """A (model, check) case that must fail: a strict xfail, so a check that stops
    catching a known problem fails the suite."""
    return case(model, check, pytest.mark.xfail(strict=True, reason=reason))


def _bounds(config: pytest.Config, kind: type[_Bounds], names: dict[str, str]) -> _Bounds:
    """``kind`` built from its defaults, with the fields named in ``names`` (option -> field) set where given."""
    options = options_of(config)
    return kind(**{field: options[key] for key, field in names.items() if options[key] is not None})


def thresholds(config: pytest.Config) -> Thresholds:
    """The battery's bounds with the run's overrides applied."""
    from trainstab.checks import Thresholds

    return _bounds(
        config,
        Thresholds,
        {
            "trainstab_max_lr": "max_lr",
            "trainstab_attention_logit_bound": "attention_logit",
            "trainstab_log_z_bound": "log_z",
            "trainstab_lr_sensitivity_bound": "lr_sensitivity",
            "trainstab_grad_rms_over_eps": "grad_rms_over_eps",
            "trainstab_spike_score_bound": "spike_score",
        },
    )


def scaling_thresholds(config: pytest.Config) -> ScalingThresholds:
    """The scaling checks' bounds with the run's overrides applied (shared bounds come from the battery's options)."""
    from trainstab.scaling import ScalingThresholds

    return _bounds(
        config,
        ScalingThresholds,
        {
            "trainstab_target_params": "target_parameters",
            "trainstab_max_lr": "max_lr",
            "trainstab_lr_sensitivity_bound": "lr_sensitivity",
            "trainstab_grad_rms_over_eps": "grad_rms_over_eps",
        },
    )


_EVIDENCE: dict[str, Evidence] = {}


def evidence(config: pytest.Config, sweep: SweepConfig) -> Evidence:
    """One model's ladders and coordinate check, shared by its scaling checks in this process.

    Every rung's sweep goes through the session cache, so rungs shared with the
    battery (the base size) or with another worker train once.
    """
    from trainstab.scaling import Evidence, ScalingConfig

    options = options_of(config)
    plan = ScalingConfig()
    changes = {k: options[f"trainstab_{k}"] for k in ("widths", "depths") if options[f"trainstab_{k}"] is not None}
    plan = dataclasses.replace(plan, **changes)
    key = cache_key(sweep) + repr(plan)
    if key not in _EVIDENCE:
        _EVIDENCE[key] = Evidence(sweep, plan, lambda rung: cached_sweep(config, rung))
    return _EVIDENCE[key]


def sweep_config(config: pytest.Config, target: ModelUnderTest) -> SweepConfig:
    """The sweep a model is checked with: the run's options, then the model's own overrides."""
    from trainstab.config import PROFILES, SweepConfig, validate
    from trainstab.overrides import apply_overrides

    options = options_of(config)
    profile_steps, profile_lrs = PROFILES[options["trainstab_profile"]]
    base = SweepConfig(model_name=target.name or options["trainstab_model"], lrs=profile_lrs)
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


def sweep_of(config: pytest.Config, target: ModelUnderTest) -> SweepResult:
    """This session's sweep of ``target`` under the run's options (computed once)."""
    return cached_sweep(config, sweep_config(config, target))


_MEMO: dict[str, SweepResult] = {}


def cache_key(sweep: SweepConfig) -> str:
    """A digest of everything a sweep's numbers depend on."""
    import torch

    from trainstab.corpus import bundled_corpus_path
    from trainstab.environment import trainstab_version

    corpus = Path(sweep.corpus) if sweep.corpus is not None else bundled_corpus_path()
    stat = corpus.stat() if corpus.exists() else None
    identity = {
        "config": dataclasses.asdict(sweep),
        "corpus": [str(corpus.resolve()), stat.st_size if stat else None, stat.st_mtime_ns if stat else None],
        "trainstab": trainstab_version(),
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cached_sweep(config: pytest.Config, sweep: SweepConfig) -> SweepResult:
    """The sweep's result, computed once per session across all xdist workers."""
    from filelock import FileLock

    from trainstab.sweep import run_sweep

    key = cache_key(sweep)
    if key in _MEMO:
        return _MEMO[key]
    folder = session_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.pickle"
    with FileLock(str(path) + ".lock"):
        if path.exists():
            result: SweepResult = pickle.loads(path.read_bytes())
        else:
            result = run_sweep(sweep)
            path.write_bytes(pickle.dumps(result))
    _MEMO[key] = result
    return result
