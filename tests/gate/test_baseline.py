"""Baseline files: what they record, how they are validated, how numbers are compared."""

import dataclasses
import json
import math

import pytest

from trainstab.checks.battery import BATTERY, Thresholds
from trainstab.core.config import SweepConfig
from trainstab.gate.baseline import (
    TOLERANCES,
    Baseline,
    BaselineError,
    Tolerance,
    compare,
    file_name,
    new_baseline,
    protocol_changes,
    read_baseline,
    recipe_changes,
    to_text,
)
from trainstab.train.sweep import run_sweep

TINY = SweepConfig(lrs=(1e-2, 3e-1))
TINY = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=20), workers=1)


@pytest.fixture(scope="module")
def sweep():
    return run_sweep(TINY)


@pytest.fixture
def recorded(sweep, tmp_path):
    """The attention baseline of the tiny sweep, written to a file."""
    path = tmp_path / "reference" / "attention_logits.json"
    path.parent.mkdir()
    path.write_text(to_text(new_baseline("reference", "attention_logits", sweep, Thresholds())))
    return path


def test_every_check_records_its_metrics_per_lr_and_the_file_reads_back(sweep, tmp_path):
    for check, metrics in ((name, check.metric_names) for name, check in BATTERY.items()):
        data = new_baseline("reference", check, sweep, Thresholds())
        assert tuple(data["metrics"]) == metrics
        path = tmp_path / f"{check}.json"
        path.write_text(to_text(data))
        assert read_baseline(path, check).data == json.loads(to_text(data))
    logits = new_baseline("reference", "attention_logits", sweep, Thresholds())["metrics"]["max_attention_logit"]
    assert set(logits) == {"0.01", "0.3"}
    assert all(isinstance(v, float) for v in logits.values())


def test_the_file_records_protocol_recipe_and_environment_but_no_machine_paths(sweep):
    data = new_baseline("reference", "log_z", sweep, Thresholds())
    assert data["protocol"]["train.steps"] == 20
    assert data["protocol"]["lrs"] == [0.01, 0.3]
    assert data["protocol"]["corpus"].startswith("corpus.npy (")
    assert data["recipe"]["model.qk_layernorm"] is True
    assert set(data["environment"]) == {
        "trainstab",
        "torch",
        "python",
        "cpu",
        "device_name",
        "precision",
        "reproducibility",
        "seed",
    }
    assert (data["protocol"]["train.device"], data["protocol"]["train.precision"]) == ("cpu", "fp32")
    assert not {"workers", "executor", "train.seed"} & set(data["recipe"])


def test_a_missing_baseline_reads_as_none(tmp_path):
    assert read_baseline(tmp_path / "absent.json", "log_z") is None


def _edited(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(check="log_z"), "\"check\" is 'log_z' but the file is the baseline of 'attention_logits'"),
        (lambda d: d.update(trainstab_baseline=2), '"trainstab_baseline" is 2; this trainstab reads 1'),
        (lambda d: d.pop("protocol"), '"protocol" is missing or not an object'),
        (lambda d: d["metrics"].pop("max_attention_logit"), '"metrics" has no "max_attention_logit"'),
        (lambda d: d["metrics"].update(extra=1), '"metrics" has "extra", which check attention_logits does not'),
        (lambda d: d["metrics"]["max_attention_logit"].update({"fast": 1}), "has key 'fast', which is not a learning"),
        (lambda d: d["metrics"]["max_attention_logit"].update({"0.3": "big"}), 'at LR 0.3 is "big", not a number'),
        (lambda d: d["metrics"].update(max_attention_logit=[1]), "must be an object keyed by LR"),
        (lambda d: d["metrics"].update(max_attention_logit=36.1), "must be an object keyed by LR, not 36.1"),
        (lambda d: d["metrics"]["max_attention_logit"].pop("0.3"), "has LRs ['0.01'], but \"protocol\" lists"),
        (lambda d: d.update(model="other"), "\"model\" is 'other' but this is the baseline of 'reference'"),
        (lambda d: d["tolerances"].update(best_lr={"rel": 1, "abs": 0, "worse": "lower"}), '"best_lr", which is not'),
        (lambda d: d["tolerances"]["max_attention_logit"].update(worse="up"), 'tolerance of "max_attention_logit"'),
        (lambda d: d.update(max_lr="0.3"), '"max_lr" is missing or not a number'),
    ],
)
def test_a_hand_edited_file_is_an_error_naming_the_file_and_what_is_wrong(recorded, change, problem):
    _edited(recorded, change)
    with pytest.raises(BaselineError) as error:
        read_baseline(recorded, "attention_logits", "reference")
    assert str(recorded) in str(error.value)
    assert problem in str(error.value)
    assert "left untouched" in str(error.value)


@pytest.mark.parametrize("text", ["", "{", "\x00\x01", "null", '{"max_lr": NaN}', "[Infinity]"])
def test_a_file_that_is_not_a_json_object_is_an_error(recorded, text):
    recorded.write_text(text)
    with pytest.raises(BaselineError, match=r"attention_logits\.json"):
        read_baseline(recorded, "attention_logits")


def _baseline(metrics, tolerances, max_lr=0.3):
    return Baseline(path=None, data={"metrics": metrics, "tolerances": tolerances, "max_lr": max_lr})


HIGHER = {"rel": 0.5, "abs": 5.0, "worse": "higher"}


def test_a_metric_is_worse_only_beyond_abs_plus_rel_times_the_baseline_in_its_bad_direction():
    old = _baseline({"max_attention_logit": {"0.1": 10.0, "0.3": 30.0}}, {"max_attention_logit": HIGHER})
    # allowed: 10 + 5 + 5 = 20 and 30 + 5 + 15 = 50
    at_limit = compare(old, {"metrics": {"max_attention_logit": {"0.1": 20.0, "0.3": 50.0}}})
    assert [row.worse for row in at_limit] == [False, False]
    beyond = compare(old, {"metrics": {"max_attention_logit": {"0.1": 20.01, "0.3": 1.0}}})
    assert [row.worse for row in beyond] == [True, False]  # much lower is better, not worse


def test_a_lower_is_worse_metric_fails_when_it_falls():
    tolerance = {"grad_rms_over_eps": {"rel": 0.9, "abs": 0.0, "worse": "lower"}}
    old = _baseline({"grad_rms_over_eps": {"0.1": 400.0}}, tolerance)
    assert not compare(old, {"metrics": {"grad_rms_over_eps": {"0.1": 40.0}}})[0].worse
    assert compare(old, {"metrics": {"grad_rms_over_eps": {"0.1": 39.0}}})[0].worse


def test_a_run_that_now_diverges_is_worse_and_lrs_above_max_lr_are_not_compared():
    old = _baseline({"max_attention_logit": {"0.1": 10.0, "1": 10.0}}, {"max_attention_logit": HIGHER})
    rows = compare(old, {"metrics": {"max_attention_logit": {"0.1": None, "1": 1e9}}})
    assert [(row.lr, row.worse) for row in rows] == [("0.1", True)]
    diverged = _baseline({"diverged": {"0.1": False}}, {"diverged": {"rel": 0, "abs": 0, "worse": "higher"}})
    assert compare(diverged, {"metrics": {"diverged": {"0.1": True}}})[0].worse


def test_informational_metrics_are_never_gated():
    old = _baseline({"best_lr": 0.01, "loss_curve": {"0.1": [5.0]}}, {})
    assert compare(old, {"metrics": {"best_lr": 0.3, "loss_curve": {"0.1": [9.0]}}}) == []


def test_the_comparison_message_shows_baseline_measured_and_tolerance():
    old = _baseline({"lr_sensitivity": 0.2}, {"lr_sensitivity": {"rel": 0.1, "abs": 0.02, "worse": "higher"}})
    row = compare(old, {"metrics": {"lr_sensitivity": 0.25}})[0]
    assert row.describe() == (
        "lr_sensitivity: baseline 0.2, measured 0.25, allowed up to 0.24 (tolerance rel 0.1 + abs 0.02)"
    )
    assert Tolerance(0.1, 0.02, "higher").allowed(0.2) == pytest.approx(0.04)


def test_protocol_and_recipe_changes_are_listed_by_key(sweep, recorded):
    old = read_baseline(recorded, "attention_logits")
    other = dataclasses.replace(sweep.config, train=dataclasses.replace(sweep.config.train, steps=30))
    changed = new_baseline("reference", "attention_logits", dataclasses.replace(sweep, config=other), Thresholds())
    assert protocol_changes(old, changed) == ["train.steps: baseline 20, this run 30"]
    no_qk = dataclasses.replace(sweep.config, model=dataclasses.replace(sweep.config.model, qk_layernorm=False))
    changed = new_baseline("reference", "attention_logits", dataclasses.replace(sweep, config=no_qk), Thresholds())
    assert protocol_changes(old, changed) == []
    assert recipe_changes(old, changed) == ["model.qk_layernorm: baseline true, this run false"]


def test_model_labels_become_safe_folder_names():
    assert file_name("reference") == "reference"
    assert file_name("mypkg.models:build") == "mypkg.models_build"
    assert file_name("reference[qk_layernorm=false]") == "reference_qk_layernorm=false"
    assert file_name("../../etc") == "etc"
    assert file_name("..") == "model"


def test_nan_in_a_baseline_is_an_error_not_a_silently_ungated_metric(recorded):
    recorded.write_text(recorded.read_text().replace('"0.3": ', '"0.3": NaN, "x": '))
    with pytest.raises(BaselineError, match="holds NaN, which is not a finite number"):
        read_baseline(recorded, "attention_logits")


def test_a_tolerance_deleted_by_hand_falls_back_to_the_default(recorded):
    _edited(recorded, lambda d: d["tolerances"].clear())
    old = read_baseline(recorded, "attention_logits")
    assert old.tolerances["max_attention_logit"] == TOLERANCES["max_attention_logit"]
    rows = compare(old, {"metrics": {"max_attention_logit": {"0.01": 1e6, "0.3": 1e6}}})
    assert all(row.worse for row in rows)


def test_an_infinite_setting_is_written_as_text(sweep):
    config = dataclasses.replace(sweep.config, train=dataclasses.replace(sweep.config.train, grad_clip=math.inf))
    data = new_baseline("reference", "log_z", dataclasses.replace(sweep, config=config), Thresholds())
    assert data["recipe"]["train.grad_clip"] == "inf"
    json.loads(to_text(data))
