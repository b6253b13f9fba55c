"""The baseline workflow end to end, the way a team lives it, on a pytester scratch project.

No baseline (fail, file written) -> pass -> a pull request that removes
qk-layernorm (fail, with baseline, measured and tolerance) -> the update flag
-> pass; and every way a baseline file can be broken gets an error naming
the file, never a crash or an overwrite.
"""

import json

import pytest

# The long tier (`pytest -m long`, after the README's command in .ci/run):
# a dozen trained pytest runs of a user's project.
pytestmark = pytest.mark.long
pytest_plugins = ["pytester"]

TEST_FILE = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["reference"], checks=["attention_logits", "log_z"])
def test_training_stability(model, check):
    check(model)
"""
# Short runs (2 s a sweep). The absolute attention bound is raised so that what
# fails the destabilizing change below is the comparison with main, not the bound.
INI = """
[pytest]
trainstab_baselines = baselines
trainstab_steps = 60
trainstab_lrs = 1e-2,1e-1,3e-1
trainstab_attention_logit_bound = 1e6
"""
ATTENTION = "baselines/reference/attention_logits.json"
LOG_Z = "baselines/reference/log_z.json"
REMOVE_QK_LAYERNORM = ("--trainstab-set", "qk_layernorm=false")  # the pull request under review


@pytest.fixture(scope="module")
def kept_sweeps(tmp_path_factory):
    """One persistent sweep cache for every scratch project here: a sweep they share trains once."""
    return tmp_path_factory.mktemp("kept-sweeps")


@pytest.fixture
def project(pytester, kept_sweeps):
    pytester.makepyfile(test_gate=TEST_FILE)
    pytester.makeini(INI + f"trainstab_cache = {kept_sweeps}\n")
    return pytester


def test_the_whole_lifecycle_of_a_baseline(project):
    first = project.runpytest_subprocess()
    first.assert_outcomes(failed=2)
    first.stdout.fnmatch_lines([f"*no baseline yet for reference / attention_logits: wrote {ATTENTION}*commit this*"])
    recorded = (project.path / ATTENTION).read_text()
    assert json.loads(recorded)["metrics"]["max_attention_logit"].keys() == {"0.01", "0.1", "0.3"}

    project.runpytest_subprocess().assert_outcomes(passed=2)  # committed: main is green

    worse = project.runpytest_subprocess(*REMOVE_QK_LAYERNORM, "-n", "2")
    worse.assert_outcomes(failed=1, passed=1)
    worse.stdout.fnmatch_lines(
        [
            f"*attention_logits for reference (seed 0): worse than the baseline {ATTENTION}:*",
            "*max_attention_logit at lr=0.3: baseline *, measured *, allowed up to * (tolerance rel 0.5 + abs 5)*",
            "*changed since the baseline: model.qk_layernorm: baseline true, this run false*",
        ]
    )
    assert (project.path / ATTENTION).read_text() == recorded  # a failing run never touches the baseline
    obtained = json.loads((project.path / "baselines/reference/attention_logits.obtained.json").read_text())
    assert (
        obtained["metrics"]["max_attention_logit"]["0.3"]
        > 100 * json.loads(recorded)["metrics"]["max_attention_logit"]["0.3"]
    )

    update = project.runpytest_subprocess(*REMOVE_QK_LAYERNORM, "--trainstab-update-baseline", "-n", "2")
    update.assert_outcomes(passed=2)
    update.stdout.fnmatch_lines([f"*trainstab: wrote {ATTENTION} (baseline rewritten by --trainstab-update-baseline)*"])
    assert LOG_Z not in update.stdout.str()  # only the failing baseline is rewritten
    assert (project.path / ATTENTION).read_text() != recorded

    project.runpytest_subprocess(*REMOVE_QK_LAYERNORM).assert_outcomes(passed=2)
    assert not (project.path / "baselines/reference/attention_logits.obtained.json").exists()  # stale: removed


def test_regen_all_rewrites_every_baseline_it_checks_and_deletes_none(project):
    project.runpytest_subprocess()  # records both
    stale = project.path / "baselines" / "retired-model" / "log_z.json"
    stale.parent.mkdir()
    stale.write_text('{"kept": true}\n')
    regen = project.runpytest_subprocess(*REMOVE_QK_LAYERNORM, "--trainstab-regen-all")
    regen.assert_outcomes(passed=2)
    regen.stdout.fnmatch_lines(["*trainstab: baselines baselines: * file(s) (rewriting all)*"])
    for path in (ATTENTION, LOG_Z):
        assert f"trainstab: wrote {path} (baseline rewritten by --trainstab-regen-all)" in regen.stdout.str()
        assert json.loads((project.path / path).read_text())["recipe"]["model.qk_layernorm"] is False
    assert stale.read_text() == '{"kept": true}\n'


def test_a_team_loosened_tolerance_in_the_file_survives_an_update(project):
    project.runpytest_subprocess()
    path = project.path / ATTENTION
    data = json.loads(path.read_text())
    data["tolerances"]["max_attention_logit"]["rel"] = 1e6  # this model's logits may grow freely
    path.write_text(json.dumps(data, indent=2))
    project.runpytest_subprocess(*REMOVE_QK_LAYERNORM).assert_outcomes(passed=2)
    regen = project.runpytest_subprocess("--trainstab-regen-all")
    regen.assert_outcomes(passed=2)
    assert f"trainstab: wrote {ATTENTION} (baseline rewritten by --trainstab-regen-all)" in regen.stdout.str()
    assert json.loads(path.read_text())["tolerances"]["max_attention_logit"]["rel"] == 1e6


def test_a_corrupted_baseline_is_a_clear_error_naming_the_file_and_no_flag_overwrites_it(project):
    project.runpytest_subprocess()
    path = project.path / ATTENTION
    broken = path.read_text()[:100]  # cut off, as by a bad merge
    path.write_text(broken)
    for flags in ((), ("--trainstab-update-baseline",), ("--trainstab-regen-all", "-n", "2")):
        result = project.runpytest_subprocess(*flags)
        result.assert_outcomes(failed=1, passed=1)
        result.stdout.fnmatch_lines(
            [f"*baseline {ATTENTION}: is not valid JSON (line *, column *left untouched*git checkout -- {ATTENTION}*"]
        )
        assert "Traceback" not in result.stdout.str()
        assert path.read_text() == broken


def test_a_hand_edited_baseline_is_a_clear_error_naming_the_file_and_the_value(project):
    project.runpytest_subprocess()
    path = project.path / ATTENTION
    path.write_text(path.read_text().replace('"0.3": ', '"0.3": "huge", "x": '))
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([f'*baseline {ATTENTION}: metric "max_attention_logit" at LR 0.3 is "huge"*'])


def test_a_baseline_measured_under_another_protocol_is_not_compared(project):
    project.runpytest_subprocess()
    result = project.runpytest_subprocess("--trainstab-steps=40")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            f"*baseline {ATTENTION} was measured under another protocol, so it cannot be compared:*",
            "*train.steps: baseline 60, this run 40*",
        ]
    )


def test_another_environment_is_a_header_warning_not_a_failure(project):
    project.runpytest_subprocess()
    for path in (ATTENTION, LOG_Z):
        data = json.loads((project.path / path).read_text())
        data["environment"]["torch"] = "1.13.1"
        (project.path / path).write_text(json.dumps(data, indent=2))
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*trainstab: WARNING: baselines were recorded in another environment (torch 1.13.1 -> *"]
    )


def test_a_rewrite_flag_without_a_baseline_folder_is_a_usage_error(pytester):
    pytester.makepyfile(test_gate=TEST_FILE)
    result = pytester.runpytest_subprocess("--trainstab-update-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--trainstab-update-baseline needs a baseline folder*trainstab_baselines*"])
