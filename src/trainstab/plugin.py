"""The pytest plugin (registered through the ``pytest11`` entry point).

Kept thin on purpose: options, ini keys, markers and the header live here,
and nothing here imports torch, so pytest start-up stays fast for projects
that install trainstab but run no stability test. The work is in
:mod:`trainstab.testing`, imported when a trainstab test runs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trainstab.config import int_list, lr_list
from trainstab.files import write_text_atomically

# (option suffix, ini key, parser, default, help). Thresholds default to the battery's.
OPTIONS: list[tuple[str, str, Callable[[str], Any], str | None, str]] = [
    ("model", "trainstab_model", str, "reference", "default model: reference, hf:<type> or package.module:factory"),
    ("profile", "trainstab_profile", str, "default", "steps and LR grid preset: quick, default or thorough"),
    ("seed", "trainstab_seed", int, "0", "seed of init and data order"),
    ("steps", "trainstab_steps", int, None, "optimizer steps per run (default: 200)"),
    ("lrs", "trainstab_lrs", lr_list, None, "comma-separated LR grid (default: the paper's)"),
    ("corpus", "trainstab_corpus", str, None, "token file instead of the bundled corpus"),
    ("device", "trainstab_device", str, "cpu", "device to train on (only cpu is supported)"),
    ("max-lr", "trainstab_max_lr", float, None, "checks look at LRs up to this (default 0.3)"),
    ("attention-logit-bound", "trainstab_attention_logit_bound", float, None, "max attention logit (1e3)"),
    ("log-z-bound", "trainstab_log_z_bound", float, None, "max |log Z| (20)"),
    ("lr-sensitivity-bound", "trainstab_lr_sensitivity_bound", float, None, "max LR sensitivity (0.3)"),
    ("grad-rms-over-eps", "trainstab_grad_rms_over_eps", float, None, "min gradient RMS / AdamW eps (10)"),
    ("spike-score-bound", "trainstab_spike_score_bound", float, None, "max loss spike score (0)"),
    ("report", "trainstab_report", str, None, "write every check's verdict and value to this JSON file"),
    ("target-params", "trainstab_target_params", float, None, "size the scaling forecasts extrapolate to (1e9)"),
    ("widths", "trainstab_widths", int_list, None, "width ladder of the scaling checks (32,48,64)"),
    ("depths", "trainstab_depths", int_list, None, "depth ladder of the scaling checks (1,2,4)"),
]
PROFILE_NAMES = ("quick", "default", "thorough")  # trainstab.config.PROFILES, named here without importing torch
SESSION_ENV = "TRAINSTAB_SESSION"  # shared by the controller and its xdist workers


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--trainstab-*`` options and the matching ini keys."""
    group = parser.getgroup("trainstab", "training-stability checks (trainstab)")
    for suffix, ini, _kind, _default, text in OPTIONS:
        group.addoption(f"--trainstab-{suffix}", dest=ini, default=None, help=f"{text} [ini: {ini}]")
        parser.addini(ini, help=text, default=None)
    group.addoption(
        "--trainstab-set",
        dest="trainstab_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model or training option for every trainstab test (repeatable) [ini: trainstab_set]",
    )
    parser.addini("trainstab_set", type="linelist", help="KEY=VALUE overrides, one per line", default=[])


def read_options(config: pytest.Config) -> dict[str, Any]:
    """Every trainstab option, from the command line or else the ini file, typed.

    Raises :class:`pytest.UsageError` naming the option and the expected type.
    """
    values: dict[str, Any] = {}
    for suffix, ini, kind, default, _text in OPTIONS:
        raw = config.getoption(ini)
        source = f"--trainstab-{suffix}"
        if raw is None:
            raw, source = config.getini(ini), f"ini key {ini}"
        if raw in (None, "", []):
            raw = default
        if raw is None:
            values[ini] = None
            continue
        try:
            values[ini] = kind(raw)
        except ValueError:
            expected = {"int": "an integer", "float": "a number", "lr_list": "numbers like 1e-3,1e-2",
                        "int_list": "integers like 32,48,64"}  # fmt: skip
            raise pytest.UsageError(
                f"{source}={raw!r}: expected {expected.get(kind.__name__, kind.__name__)}"
            ) from None
    if values["trainstab_device"] != "cpu":
        raise pytest.UsageError(
            f"trainstab device {values['trainstab_device']!r} is not supported: trainstab trains on the CPU "
            "(drop the option or use cpu)"
        )
    if values["trainstab_profile"] not in PROFILE_NAMES:
        raise pytest.UsageError(
            f"trainstab profile {values['trainstab_profile']!r} is unknown; use one of {', '.join(PROFILE_NAMES)}"
        )
    values["trainstab_set"] = [*config.getini("trainstab_set"), *config.getoption("trainstab_set")]
    # Checked now, not in every test: config and overrides do not import torch.
    from trainstab.config import SweepConfig
    from trainstab.errors import TrainstabError
    from trainstab.overrides import apply_overrides

    try:
        apply_overrides(SweepConfig(), values["trainstab_set"])
    except TrainstabError as error:
        raise pytest.UsageError(f"trainstab_set / --trainstab-set: {error}") from None
    return values


def pytest_configure(config: pytest.Config) -> None:
    """Markers, validated options, and the session folder shared with xdist workers."""
    config.addinivalue_line("markers", "trainstab: a training-stability test (trains tiny models)")
    config.stash[_OPTIONS_KEY] = read_options(config)
    if not hasattr(config, "workerinput"):  # the controller, or a run without xdist
        os.environ[SESSION_ENV] = uuid.uuid4().hex  # workers inherit it: one sweep cache per session


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller removes the session's sweep cache."""
    if not hasattr(config, "workerinput") and SESSION_ENV in os.environ:
        shutil.rmtree(session_folder(config), ignore_errors=True)


def session_folder(config: pytest.Config) -> Path:
    """Where this session's sweeps are cached (shared by every xdist worker)."""
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    root = cache.mkdir("trainstab") if cache is not None else Path(tempfile.gettempdir()) / "trainstab"
    return Path(root) / f"session-{os.environ.get(SESSION_ENV, 'local')}"


def pytest_report_header(config: pytest.Config) -> str:
    """The seed and default model under test, first thing in the output."""
    options = config.stash[_OPTIONS_KEY]
    return f"trainstab: model={options['trainstab_model']} seed={options['trainstab_seed']}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Let checks find the running test (to attach their metrics to its report)."""
    _CURRENT["item"] = item


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Forget the finished test."""
    _CURRENT.pop("item", None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect check verdicts (also from xdist workers) for the terminal summary."""
    if report.when == "call":
        for name, value in report.user_properties:
            if name == "trainstab":
                _VERDICTS.append(dict(value))  # type: ignore[call-overload]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller writes the verdicts to ``--trainstab-report``, if asked."""
    path = options_of(session.config)["trainstab_report"]
    if path is None or hasattr(session.config, "workerinput") or not _VERDICTS:
        return
    report = {
        "seed": options_of(session.config)["trainstab_seed"],
        "checks": sorted(_VERDICTS, key=lambda r: (r["model"], r["order"])),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(target, json.dumps(report, indent=2) + "\n")  # keeps an earlier report aside


@pytest.fixture
def trainstab_sweep(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """A function returning this session's (cached) sweep of a model.

    ``trainstab_sweep()`` sweeps the run's model; ``trainstab_sweep("reference",
    "qk_layernorm=false")`` a model with overrides. Returns a SweepResult.
    """
    from trainstab.testing import ModelUnderTest, sweep_of

    def sweep(model: str | None = None, *overrides: str) -> Any:
        return sweep_of(request.config, ModelUnderTest(model, tuple(overrides)))

    return sweep


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One row per model and check: measured value, bound, verdict."""
    if not _VERDICTS:
        return
    terminalreporter.section("trainstab summary")
    terminalreporter.write_line(f"{'model':<40} {'check':<18} {'value':>10} {'bound':>10}  verdict")
    for row in sorted(_VERDICTS, key=lambda r: (r["model"], r["order"])):
        verdict = "pass" if row["passed"] else "FAIL"
        terminalreporter.write_line(
            f"{row['model']:<40} {row['check']:<18} {row['value']:>10.4g} {row['bound']:>10.4g}  {verdict}"
        )


_OPTIONS_KEY = pytest.StashKey[dict[str, Any]]()
_CURRENT: dict[str, pytest.Item] = {}
_VERDICTS: list[dict[str, Any]] = []


def options_of(config: pytest.Config) -> dict[str, Any]:
    """The typed trainstab options of a pytest run."""
    return config.stash[_OPTIONS_KEY]


def current_item() -> pytest.Item | None:
    """The test item running now, if any."""
    return _CURRENT.get("item")
