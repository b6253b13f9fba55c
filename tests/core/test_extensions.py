"""A team's registrations, refused in one line where they would be silently wrong (trainstab.core.extensions and
trainstab.checks.registry); the whole path in a user's repository is
tests/end_to_end/test_extending_in_a_user_repo.py."""

import importlib.metadata
import threading
import time
from types import SimpleNamespace

import pytest

from trainstab.checks import registry
from trainstab.checks.battery import CheckResult, Thresholds, run_check
from trainstab.core import extensions
from trainstab.core.errors import TrainstabError
from trainstab.core.results import Metric, Tolerance


def _passes(sweep, t):
    return CheckResult("team_check", True, 0.0, 1.0, None, "fine")


def _register(monkeypatch, name="team_check", run=_passes, metrics=()):
    monkeypatch.setitem(extensions.CHECKS, name, extensions.RegisteredCheck(name, run, metrics, True, "myteam"))


@pytest.mark.parametrize(
    ("metric", "said"),
    [
        (Metric("n_dead", lambda run, sweep, t: 0, "count"), "'count' recorded per LR"),
        (Metric("ok", lambda sweep, t: True, "bool", per_lr=False), "'bool' recorded once per sweep"),
        (Metric("curve", lambda sweep, t: [1.0], "list", per_lr=False), "'list' recorded once per sweep"),
        (Metric("odd", lambda run, sweep, t: 1.0, "fraction"), "'fraction' recorded per LR"),  # type: ignore[arg-type]
    ],
)
def test_a_metric_a_baseline_cannot_hold_is_refused_when_the_check_is_read(monkeypatch, metric, said):
    # Written, such a metric made a baseline file that every later run refused as damaged.
    _register(monkeypatch, metrics=(metric,))
    with pytest.raises(TrainstabError, match=said):
        registry.all_checks()


def test_a_metric_name_another_check_defines_otherwise_is_refused(monkeypatch):
    other = Metric("max_attention_logit", lambda run, sweep, t: 0.0, tolerance=Tolerance(9.0, 9.0, "lower"))
    _register(monkeypatch, metrics=(other,))
    with pytest.raises(TrainstabError, match="records metric 'max_attention_logit', which another check records"):
        registry.all_checks()


def test_a_name_of_a_built_in_check_is_refused(monkeypatch):
    _register(monkeypatch, name="attention_logits")
    with pytest.raises(TrainstabError, match="has the name of a built-in check"):
        registry.all_checks()


def test_a_team_check_joins_the_default_set_and_its_options_configure_it(monkeypatch):
    monkeypatch.setitem(
        extensions.CHECKS,
        "team_check",
        extensions.RegisteredCheck("team_check", _passes, (), True, "myteam", ("attention-logit-bound",)),
    )
    assert registry.battery_names()[-1] == "team_check"
    configured = registry.configured_by(registry.all_checks())
    assert "team_check" in configured["attention-logit-bound"] and "team_check" in configured["baselines"]
    assert "team_check" in configured["max-lr"] and "team_check" not in configured["widths"]


def test_a_result_under_another_name_is_refused_not_filed_under_it(monkeypatch):
    # Its baseline and report row are keyed by the name the result carries: a copied "attention_logits" would
    # have read and written the built-in check's baseline.
    def misnamed(sweep, t):
        return CheckResult("attention_logits", True, 0.0, 1.0, None, "fine")

    _register(monkeypatch, run=misnamed)
    with pytest.raises(TrainstabError, match="returned a CheckResult named 'attention_logits': name it 'team_check'"):
        run_check(registry.check("team_check"), None, Thresholds())


def test_anything_but_a_check_result_is_refused(monkeypatch):
    _register(monkeypatch, run=lambda sweep, t: True)
    with pytest.raises(TrainstabError, match="returned bool, not a CheckResult"):
        run_check(registry.check("team_check"), None, Thresholds())


class _Entry:
    """An entry point of the trainstab group whose module does ``action`` when imported."""

    def __init__(self, name, action):
        self.name, self.value, self.dist, self.action = name, f"{name}.stability", SimpleNamespace(name=name), action

    def load(self):
        return self.action()


@pytest.fixture
def fresh_loader(monkeypatch):
    """The loader as in a new process, reading the given entry points."""
    monkeypatch.setattr(extensions, "_loaded", False)
    monkeypatch.setattr(extensions, "_failure", None)

    def use(*entries):
        monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: list(entries))

    return use


def test_a_module_that_skips_itself_at_import_is_refused_at_every_look_up(fresh_loader):
    # pytest.skip(allow_module_level=True) raises a BaseException: before, the first look-up raised it and every
    # later one went on with the built-in checks only, the team's missing.
    def skips():
        pytest.skip("no GPU", allow_module_level=True)

    fresh_loader(_Entry("myteam", skips))
    for _ in range(2):
        with pytest.raises(TrainstabError, match=r"extension 'myteam' = 'myteam.stability' \(package myteam\) failed"):
            extensions.load_extensions()


def test_another_thread_waits_until_the_modules_have_registered(fresh_loader, monkeypatch):
    started = threading.Event()

    def slow_registration():
        started.set()
        time.sleep(0.3)  # a module importing torch
        extensions.register_check("slow_team_check", _passes)

    monkeypatch.delitem(extensions.CHECKS, "slow_team_check", raising=False)
    fresh_loader(_Entry("slowteam", slow_registration))
    loader = threading.Thread(target=extensions.load_extensions)
    loader.start()
    started.wait()
    seen = registry.battery_names()  # meanwhile, on this thread
    loader.join()
    assert "slow_team_check" in seen
    del extensions.CHECKS["slow_team_check"]
