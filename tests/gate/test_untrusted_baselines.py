"""Baseline files are untrusted input (issue 27): anyone's pull request, or a merge, can edit a committed file.

Whatever a file holds, it must not pass a regression (a flipped direction, a duplicated key), crash or hang a
run (a 400-digit number, nesting 100,000 deep, a named pipe, a link to /dev/zero), or print lines of its own in
the header; each is one line naming the file, and the file is left untouched. What a team may edit (a
tolerance's size, keys of its own such as "notes") survives a rewrite, and no baseline, however loose, can turn
a check that fails its own bound into a pass.
"""

import dataclasses
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import trainstab.gate.baseline
from trainstab.checks.battery import BATTERY, Thresholds
from trainstab.cli.main import EXIT_FAILED, main
from trainstab.core.config import SweepConfig
from trainstab.core.files import write_files
from trainstab.gate.baseline import (
    Baseline,
    BaselineError,
    environment_differences,
    header_lines,
    new_baseline,
    read_baseline,
    recorded_environments,
    to_text,
)
from trainstab.gate.verdict import gate
from trainstab.run.options import BaselinePolicy, RunOptions
from trainstab.train.sweep import run_sweep

TINY = SweepConfig(lrs=(1e-2, 3e-1), workers=1)
TINY = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=20))
# The absolute attention bound is raised so that what judges the destabilizing change is the baseline alone.
LOOSE = Thresholds(attention_logit=1e6)
FLAGS = ({}, {"update_failing": True}, {"regen_all": True})


@pytest.fixture(scope="module")
def sweeps():
    """main's sweep, and a pull request's without qk-layernorm whose attention logits grow far beyond it."""
    no_qk = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, qk_layernorm=False, init_scale=30.0))
    return run_sweep(TINY), run_sweep(no_qk)


@pytest.fixture
def recorded(sweeps, tmp_path):
    """main's attention baseline, committed in ``<tmp>/reference/attention_logits.json``."""
    path = tmp_path / "reference" / "attention_logits.json"
    path.parent.mkdir()
    path.write_text(to_text(new_baseline("reference", "attention_logits", sweeps[0], LOOSE)))
    return path


def _gate(sweep, folder, bounds=LOOSE, **flags):
    result = BATTERY["attention_logits"].run(sweep, bounds)
    return gate(
        label="reference", result=result, sweep=sweep, bounds=bounds, policy=BaselinePolicy(folder, **flags), seed=0
    )


def _edited(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))
    return path.read_text()


def _assert_refused(recorded, sweep, *fragments):
    """Every run (with and without a rewrite flag) fails the check with one line naming the file; none writes."""
    text = recorded.read_text()
    for flags in FLAGS:
        gated = _gate(sweep, recorded.parent.parent, **flags)
        assert (gated.status, gated.baseline_fails, gated.passed, gated.writes) == ("error", True, False, ())
        assert "\n" not in gated.message
        assert gated.message.startswith(f"baseline {recorded}: ") and "left untouched" in gated.message
        for fragment in fragments:
            assert fragment in gated.message
        assert recorded.read_text() == text


# 1. A flipped direction ------------------------------------------------------------------------------------------


def test_a_tolerance_whose_worse_is_flipped_is_refused_not_obeyed(sweeps, recorded):
    logits = [new_baseline("r", "attention_logits", s, LOOSE)["metrics"]["max_attention_logit"] for s in sweeps]
    assert logits[1]["0.3"] > 10 * logits[0]["0.3"]  # the pull request is a real regression
    _edited(recorded, lambda d: d["tolerances"]["max_attention_logit"].update(worse="lower"))
    _assert_refused(recorded, sweeps[1], 'tolerance of "max_attention_logit" has "worse": "lower"', "never turn")


def test_the_direction_of_a_metric_comes_from_its_definition_never_from_the_file():
    flipped = {"rel": 0.5, "abs": 5.0, "worse": "lower"}
    baseline = Baseline(path=Path("x.json"), data={"tolerances": {"max_attention_logit": flipped}})
    tolerance = baseline.tolerances["max_attention_logit"]
    assert (tolerance.rel, tolerance.abs, tolerance.worse) == (0.5, 5.0, "higher")


def test_trainstab_check_fails_a_flipped_baseline_with_one_line_and_leaves_it_alone(tmp_path, capsys):
    args = ["check", "--steps", "8", "--lrs", "1e-2,3e-1", "--set", "width=16", "--set", "batch_size=4"]
    args += ["--no-progress", "--checks", "attention_logits", "--attention-logit-bound", "1e6"]
    args += ["--baselines", str(tmp_path)]
    assert main(args) == EXIT_FAILED  # records it
    path = tmp_path / "reference" / "attention_logits.json"
    text = _edited(path, lambda d: d["tolerances"]["max_attention_logit"].update(worse="lower"))
    capsys.readouterr()
    assert main(args) == EXIT_FAILED
    failures = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL ")]
    assert len(failures) == 1
    assert failures[0].startswith(f'FAIL attention_logits: baseline {path}: tolerance of "max_attention_logit"')
    assert path.read_text() == text


# 2. A key twice ----------------------------------------------------------------------------------------------------


def test_a_metric_a_merge_left_twice_is_refused_not_read_as_its_last_copy(sweeps, recorded):
    regressed = json.dumps(new_baseline("r", "attention_logits", sweeps[1], LOOSE)["metrics"]["max_attention_logit"])
    text = recorded.read_text()
    # Both sides of a merge kept: main's numbers first, the pull request's (which would win) last.
    assert text.endswith("\n    }\n  }\n}\n")  # "metrics" is the last object
    recorded.write_text(text[: -len("\n  }\n}\n")] + f',\n    "max_attention_logit": {regressed}\n  }}\n}}\n')
    assert json.loads(recorded.read_text())["metrics"]["max_attention_logit"] == json.loads(regressed)
    with pytest.raises(BaselineError) as error:
        read_baseline(recorded, "attention_logits", "reference")
    assert str(recorded) in str(error.value) and "\n" not in str(error.value)
    assert 'has the key "max_attention_logit" twice in one object' in str(error.value)
    _assert_refused(recorded, sweeps[1], '"max_attention_logit" twice')


# 3. A number no float holds ----------------------------------------------------------------------------------------


def test_a_400_digit_integer_is_one_line_naming_the_file_not_an_overflow(sweeps, recorded):
    data = json.loads(recorded.read_text())
    old = json.dumps(data["metrics"]["max_attention_logit"]["0.3"])
    recorded.write_text(recorded.read_text().replace(f'"0.3": {old}', '"0.3": ' + "9" * 400, 1))
    assert "9" * 400 in recorded.read_text()
    with pytest.raises(BaselineError, match="holds an integer of 400 digits"):
        read_baseline(recorded, "attention_logits", "reference")
    _assert_refused(recorded, sweeps[0], "integer of 400 digits")


# 4. Nesting 100,000 deep, read by the header -----------------------------------------------------------------------


def test_the_header_skips_a_baseline_nested_100000_deep_instead_of_crashing(recorded):
    deep = recorded.with_name("log_z.json")
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert list(recorded_environments(recorded.parent.parent)) == [recorded]
    lines = header_lines(RunOptions(baselines=str(recorded.parent.parent)))
    assert lines[0].endswith(": 1 file(s)")
    with pytest.raises(BaselineError, match="nested too deeply"):  # the check that reads it reports it
        read_baseline(deep, "log_z")


# 5. A pipe, a device, a runaway file -------------------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from trainstab.gate.baseline import BaselineError, read_baseline, recorded_environments

path = Path(sys.argv[1])
print("header:", [str(p) for p in recorded_environments(path.parent.parent)])
try:
    read_baseline(path, "attention_logits")
except BaselineError as error:
    print(error)
"""


def _read_in_a_child(path):
    """The header and the check reading ``path``, in a process that cannot hang this test or fill the machine."""

    def small_memory():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run(
            [sys.executable, "-c", CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=small_memory,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {path} hangs")


def test_a_baseline_that_is_a_named_pipe_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "reference" / "attention_logits.json"
    path.parent.mkdir()
    os.mkfifo(path)
    child = _read_in_a_child(path)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.splitlines() == [
        "header: []",
        f"baseline {path}: is a named pipe, not a regular file. It was left untouched: fix it by hand, restore it "
        f"(git checkout -- {path}), or delete it to record a new one on the next run",
    ]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_baseline_that_links_to_dev_zero_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "reference" / "attention_logits.json"
    path.parent.mkdir()
    path.symlink_to("/dev/zero")
    child = _read_in_a_child(path)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.splitlines()[0] == "header: []"
    assert f"baseline {path}: is a character device, not a regular file." in child.stdout


def test_a_baseline_over_the_size_cap_is_refused_before_it_is_read(sweeps, recorded):
    cap = trainstab.gate.baseline.MAX_BYTES
    text = recorded.read_text()
    recorded.write_text(text + " " * (cap + 1 - len(text)))  # valid JSON, one byte too big
    assert recorded.stat().st_size == cap + 1
    assert recorded_environments(recorded.parent.parent) == {}
    _assert_refused(recorded, sweeps[0], f"is {cap + 1} bytes, more than the {cap}")


# 6. A value that prints lines of its own ---------------------------------------------------------------------------

SPOOF = "2.0\ntrainstab: baselines verified: recorded in this environment"


def test_a_newline_in_a_recorded_environment_value_stays_on_its_own_line_in_the_header(recorded):
    _edited(recorded, lambda d: d["environment"].update(torch=SPOOF))
    lines = header_lines(RunOptions(baselines=str(recorded.parent.parent)))
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "torch 2.0\\ntrainstab: baselines verified" in lines[1]
    (difference,) = (d for d in environment_differences({"torch": SPOOF}, {"torch": "2.13"}))
    assert "\n" not in difference


def test_a_recorded_environment_value_that_is_not_a_string_number_or_null_is_refused(sweeps, recorded):
    _edited(recorded, lambda d: d["environment"].update(torch={"version": "2.0"}))
    assert recorded_environments(recorded.parent.parent) == {}
    _assert_refused(recorded, sweeps[0], '"environment" field "torch" is {"version": "2.0"}, not a string, number')


# 7. A team's own keys survive a rewrite ----------------------------------------------------------------------------

NOTES = "max_attention_logit tolerance raised after the torch 2.5 upgrade, see #412"


@pytest.mark.parametrize("flag", ["update_failing", "regen_all"])
def test_a_teams_top_level_key_survives_a_rewrite(sweeps, recorded, flag):
    _edited(recorded, lambda d: d.update(notes=NOTES))
    rewritten = _gate(sweeps[1], recorded.parent.parent, **{flag: True})
    assert rewritten.status == ("updated" if flag == "update_failing" else "regenerated")
    write_files(rewritten.writes)
    data = json.loads(recorded.read_text())
    assert data["notes"] == NOTES
    assert data["metrics"]["max_attention_logit"]["0.3"] > 100  # the pull request's numbers were written
    assert _gate(sweeps[1], recorded.parent.parent).status == "passed"


# Every field, one by one ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(trainstab_baseline=True), '"trainstab_baseline" is true; this trainstab reads 1'),
        (lambda d: d.update(model=7), '"model" is missing or not a model label (a string)'),
        (lambda d: d.pop("model"), '"model" is missing or not a model label (a string)'),
        (lambda d: d["environment"].update(seed=[0]), '"environment" field "seed" is [0], not a string'),
        (lambda d: d["environment"].update(cpu=False), '"environment" field "cpu" is false, not a string'),
        (lambda d: d["tolerances"]["max_attention_logit"].update(rel=1e7), '"rel": number from 0 to 1e+06'),
        (lambda d: d["tolerances"]["max_attention_logit"].update(abs=-1), '"abs": number from 0 to 1e+06'),
        (lambda d: d["tolerances"]["max_attention_logit"].update(rell=2), 'not {"rel": 0.5, "abs": 5.0, "worse"'),
        (lambda d: d["tolerances"].update({"spike\nscore": {}}), '"tolerances" names "spike\\nscore", which is not'),
        (lambda d: d["metrics"]["max_attention_logit"].update({"0.3": "x"}), 'at LR 0.3 is "x", not a number'),
    ],
)
def test_every_field_is_validated_with_one_line_naming_the_file(recorded, change, problem):
    _edited(recorded, change)
    with pytest.raises(BaselineError) as error:
        read_baseline(recorded, "attention_logits")
    assert str(error.value).startswith(f"baseline {recorded}: ")
    assert problem in str(error.value) and "\n" not in str(error.value)


def test_a_loosened_tolerance_up_to_the_cap_is_a_teams_choice(sweeps, recorded):
    cap = trainstab.gate.baseline.MAX_TOLERANCE
    _edited(recorded, lambda d: d["tolerances"]["max_attention_logit"].update(rel=cap, abs=cap))
    assert _gate(sweeps[1], recorded.parent.parent).status == "passed"  # this model's logits may grow freely


# The bounds are not the baseline's to move -------------------------------------------------------------------------


def test_no_baseline_can_turn_a_check_that_fails_its_bound_into_a_pass(sweeps, tmp_path):
    strict = Thresholds(attention_logit=1.0)  # the pull request's logits are far above it
    path = tmp_path / "reference" / "attention_logits.json"
    path.parent.mkdir()
    data = new_baseline("reference", "attention_logits", sweeps[1], strict)
    data["metrics"]["max_attention_logit"] = {lr: 1e300 for lr in data["metrics"]["max_attention_logit"]}
    cap = 1e6
    data["tolerances"] = {name: {**t, "rel": cap, "abs": cap} for name, t in data["tolerances"].items()}
    path.write_text(to_text(data))
    for flags in FLAGS:
        gated = _gate(sweeps[1], tmp_path, bounds=strict, **flags)
        assert gated.status in ("passed", "regenerated") and not gated.baseline_fails  # the baseline part passes...
        assert (gated.passed, gated.verdict) == (False, "FAIL")  # ...and the check still fails its bound
        assert gated.failure.startswith("attention logits grew to ") and "above the bound 1" in gated.failure


@pytest.mark.parametrize("value", [None, 0.5, -1, True])
def test_a_count_that_a_run_always_measures_cannot_be_nulled_to_switch_its_comparison_off(sweeps, tmp_path, value):
    path = tmp_path / "reference" / "parameters_move.json"
    path.parent.mkdir()
    path.write_text(to_text(new_baseline("reference", "parameters_move", sweeps[0], LOOSE)))
    assert read_baseline(path, "parameters_move") is not None
    _edited(path, lambda d: d["metrics"].update(dead_tensors=value))
    with pytest.raises(BaselineError, match='metric "dead_tensors" must be a whole number >= 0'):
        read_baseline(path, "parameters_move")


def test_a_protocol_key_from_the_file_is_escaped_in_the_change_it_is_named_in(sweeps, recorded):
    _edited(recorded, lambda d: d["protocol"].update({"steps\nFAKE: all checks passed": 1}))
    gated = _gate(sweeps[0], recorded.parent.parent)
    assert gated.passed is False
    lines = gated.message.splitlines()  # a failure lists each change on a line of its own
    assert any("steps\\nFAKE: all checks passed: baseline 1, this run null" in line for line in lines)
    assert not any(line.lstrip().startswith("FAKE") for line in lines)
