"""gate(): every baseline status, the files it asks for, and whether the test fails."""

import dataclasses

import pytest

from trainstab.checks.battery import BATTERY, Thresholds, run_check
from trainstab.core.config import SweepConfig
from trainstab.core.files import write_files
from trainstab.gate.verdict import gate
from trainstab.run.options import BaselinePolicy
from trainstab.train.sweep import run_sweep

TINY = SweepConfig(lrs=(1e-2, 3e-1), workers=1)
TINY = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=20))
BOUNDS = Thresholds()


@pytest.fixture(scope="module")
def sweeps():
    no_qk = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, qk_layernorm=False, init_scale=30.0))
    return run_sweep(TINY), run_sweep(no_qk)


def _gate(sweep, folder, **flags):
    result = BATTERY["attention_logits"].run(sweep, BOUNDS)
    return gate(
        label="reference", result=result, sweep=sweep, bounds=BOUNDS, policy=BaselinePolicy(folder, **flags), seed=0
    )


def test_baselines_off_is_status_off_with_nothing_to_write(sweeps):
    result = BATTERY["log_z"].run(sweeps[0], BOUNDS)
    gated = gate(label="reference", result=result, sweep=sweeps[0], bounds=BOUNDS, policy=BaselinePolicy(None), seed=0)
    assert (gated.status, gated.writes, gated.baseline_fails) == ("off", (), False)


def test_a_missing_baseline_fails_without_a_flag_and_passes_with_one(sweeps, tmp_path):
    plain = _gate(sweeps[0], tmp_path)
    assert (plain.status, plain.baseline_fails, [w.reason for w in plain.writes]) == ("new", True, ["new"])
    assert "commit this file" in plain.message
    flagged = _gate(sweeps[0], tmp_path, update_failing=True)
    assert (flagged.status, flagged.baseline_fails, flagged.passed) == ("new", False, True)


def test_regen_all_on_an_unchanged_baseline_writes_nothing(sweeps, tmp_path):
    write_files(_gate(sweeps[0], tmp_path).writes)
    again = _gate(sweeps[0], tmp_path, regen_all=True)
    assert (again.status, again.writes) == ("passed", ())


def test_worse_writes_only_the_obtained_file_and_update_rewrites_then_clears_it(sweeps, tmp_path):
    write_files(_gate(sweeps[0], tmp_path).writes)
    baseline = tmp_path / "reference" / "attention_logits.json"
    recorded = baseline.read_text()
    worse = _gate(sweeps[1], tmp_path)
    assert (worse.status, worse.baseline_fails) == ("worse", True)
    assert [w.path for w in worse.writes] == [str(baseline.with_name("attention_logits.obtained.json"))]
    write_files(worse.writes)
    assert baseline.read_text() == recorded
    update = _gate(sweeps[1], tmp_path, update_failing=True)
    assert (update.status, update.baseline_fails) == ("updated", False)
    assert [w.reason for w in update.writes] == ["updated", "clear"]
    lines = write_files(update.writes)
    assert baseline.read_text() != recorded
    assert not baseline.with_name("attention_logits.obtained.json").exists()
    assert lines[1].startswith("removed ")


def test_an_unusable_baseline_is_status_error_and_nothing_is_written(sweeps, tmp_path):
    baseline = tmp_path / "reference" / "attention_logits.json"
    baseline.parent.mkdir()
    baseline.write_text("{")
    for flags in ({}, {"update_failing": True}, {"regen_all": True}):
        gated = _gate(sweeps[0], tmp_path, **flags)
        assert (gated.status, gated.writes, gated.baseline_fails) == ("error", (), True)
        assert "is not valid JSON" in gated.message


def test_a_file_that_cannot_be_written_is_reported_not_raised(sweeps, tmp_path):
    (tmp_path / "reference").write_text("a file where the model's folder should be")
    lines = write_files(_gate(sweeps[0], tmp_path).writes)
    assert "could NOT write" in lines[0] and "attention_logits.json" in lines[0]


def _gate_report_only(sweep, folder):
    bounds = dataclasses.replace(BOUNDS, report_only=frozenset({"attention_logits"}))
    result = run_check("attention_logits", sweep, bounds)
    return gate(label="reference", result=result, sweep=sweep, bounds=bounds, policy=BaselinePolicy(folder), seed=0)


def test_a_report_only_check_over_its_bound_or_worse_than_its_baseline_warns_instead_of_failing(sweeps, tmp_path):
    over = _gate_report_only(sweeps[1], None)
    assert not over.result.passed and not over.result.asserted
    assert (over.passed, over.verdict, over.failure) == (True, "warn", "")
    assert "report-only" in over.result.message
    write_files(_gate(sweeps[0], tmp_path, update_failing=True).writes)
    worse = _gate_report_only(sweeps[1], tmp_path)
    assert (worse.status, worse.baseline_fails, worse.verdict) == ("worse", False, "warn")
    assert [w.reason for w in worse.writes] == ["obtained"]  # the comparison is kept for review


def test_a_report_only_check_still_fails_on_a_baseline_it_cannot_use(sweeps, tmp_path):
    write_files(_gate(sweeps[0], tmp_path, update_failing=True).writes)
    (tmp_path / "reference" / "attention_logits.json").write_text("{not json")
    broken = _gate_report_only(sweeps[0], tmp_path)
    assert (broken.status, broken.passed, broken.verdict) == ("error", False, "FAIL")
