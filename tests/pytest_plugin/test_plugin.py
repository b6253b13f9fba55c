"""The pytest plugin, tried the way a user would: pytester scratch projects."""

import json
import re
from importlib.metadata import version

import pytest

from trainstab.pytest_plugin.plugin import spread_groups
from user_project import USER_MODELS, USER_TEST

pytest_plugins = ["pytester"]

FAST = ["--trainstab-steps=150", "--trainstab-lrs=1e-2,3e-1"]


@pytest.fixture
def project(pytester):
    pytester.makepyfile(mymodels=USER_MODELS, test_stability=USER_TEST)
    pytester.syspathinsert()
    return pytester


def test_a_users_stable_model_passes_and_an_unstable_one_fails_with_the_cause(project):
    result = project.runpytest_subprocess(*FAST)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*attention_logits failed for mymodels:unstable (seed 0): attention logits grew to * at lr=0.3*"
            "consider qk-layernorm (override with --trainstab-attention-logit-bound)*",
        ]
    )
    result.stdout.fnmatch_lines(["*trainstab summary*", "*mymodels:stable*attention_logits*pass*"])


def test_the_bound_can_be_overridden_from_the_command_line(project):
    result = project.runpytest_subprocess(*FAST, "--trainstab-attention-logit-bound=1e12")
    result.assert_outcomes(passed=4)


def test_ini_keys_are_honoured_and_the_header_prints_the_seed(project):
    project.makeini("[pytest]\ntrainstab_seed = 7\ntrainstab_attention_logit_bound = 1e12\n")
    result = project.runpytest_subprocess(*FAST)
    result.stdout.fnmatch_lines(
        [
            "trainstab: seed=7 default model=reference",
            "trainstab: checking 2 model(s): mymodels:stable, mymodels:unstable",
        ]
    )
    result.assert_outcomes(passed=4)


def test_the_header_estimates_the_memory_of_a_ladders_largest_rung_before_anything_trains(project):
    result = project.runpytest_subprocess("--collect-only", "--trainstab-widths=256,512,1024")
    result.stdout.fnmatch_lines(
        ["trainstab: width ladder 256,512,1024: about 5.7 GiB for width 1024 (the largest rung)"]
    )
    assert result.ret == 0


def test_xdist_and_serial_runs_give_the_same_verdicts_and_numbers(project):
    def summary(*args):
        result = project.runpytest_subprocess(*FAST, *args)
        return sorted(
            line for line in result.outlines if re.match(r"mymodels:\S+\s+\w+\s+\S+\s+\S+\s+\S+\s+(pass|FAIL)", line)
        )

    serial = summary("-n", "0")
    parallel = summary("-n", "2")
    assert len(serial) == 4
    assert serial == parallel


# What pytest-xdist issue #1386 does under pytest 9.2 (node ids became structured): the group suffix that
# --dist loadgroup appends is lost. This conftest does the same on any pytest, after pytest-xdist's hook.
LOSE_THE_GROUPS = """
import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if "@" in item.nodeid:
            item._nodeid = item.nodeid.split("@")[0]
"""


def _workers_per_model(outlines):
    """{model: the workers its checks ran on}, from ``-v`` output."""
    workers = {}
    for line in outlines:
        found = re.match(r"\[(gw\d)\] .*test_training_stability\[(mymodels:\w+)-\w+\]", line)
        if found:
            workers.setdefault(found[2], set()).add(found[1])
    return workers


@pytest.mark.parametrize("groups_lost", [False, True], ids=["as-installed", "groups-lost"])
def test_a_loadgroup_run_whose_models_checks_ran_on_several_workers_says_so_in_one_line(project, groups_lost):
    if groups_lost:
        project.makeconftest(LOSE_THE_GROUPS)
    result = project.runpytest_subprocess(
        "--trainstab-steps=20", "--trainstab-lrs=1e-2", "-n", "2", "--dist", "loadgroup", "-v"
    )
    workers = _workers_per_model(result.outlines)
    assert sorted(workers) == ["mymodels:stable", "mymodels:unstable"]
    spread = sorted(model for model, ran_on in workers.items() if len(ran_on) > 1)
    said = [line for line in result.outlines if "did not keep each model's checks on one worker" in line]
    if not spread:  # the pytest the test extra installs (pytest<9.2, for this): nothing to say
        assert said == [] and not groups_lost
        return
    expected = (
        f"trainstab: WARNING: --dist loadgroup did not keep each model's checks on one worker (pytest "
        f"{version('pytest')}, pytest-xdist {version('pytest-xdist')}): {', '.join(spread)} ran on several, and each "
        "waited for the one training its sweep; the verdicts are right, the run is slower."
    )
    if tuple(int(part) for part in version("pytest").split(".")[:2]) >= (9, 2):
        expected += (
            " pytest 9.2 drops the group pytest-xdist gives each test (pytest-xdist issue #1386): install "
            "'pytest<9.2' until pytest-xdist releases its fix."
        )
    assert said == [expected]


def test_spread_groups_are_those_whose_checks_ran_on_more_than_one_worker():
    assert spread_groups({"m": {"gw0"}, "n": {"gw0", "gw1"}, "a": {"gw1", "gw2"}}) == ["a", "n"]
    assert spread_groups({"m": {"gw0"}}) == []


def test_without_loadgroup_nothing_is_said_about_groups(project):
    result = project.runpytest_subprocess("--trainstab-steps=20", "--trainstab-lrs=1e-2", "-n", "2")
    assert "did not keep each model's checks" not in result.stdout.str()


def test_a_built_in_model_key_in_the_ini_fails_a_user_models_checks_with_one_line(project):
    project.makeini("[pytest]\ntrainstab_set = qk_layernorm=false\n")
    result = project.runpytest_subprocess(*FAST)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        ["*trainstab: mymodels:stable: qk_layernorm=False: built-in-model setting(s) of the reference model only*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_without_pytest_xdist_the_checks_run_with_strict_markers_and_no_marker_warning(project):
    result = project.runpytest_subprocess(*FAST, "-p", "no:xdist", "--strict-markers")
    result.assert_outcomes(passed=3, failed=1)
    assert "PytestUnknownMarkWarning" not in result.stdout.str()


def test_a_strict_xfail_shows_xfail_in_the_summary_and_the_report_not_fail(pytester, tmp_path):
    pytester.makepyfile(
        mymodels=USER_MODELS,
        test_known="""
import pytest
from trainstab.testing import expect_failure


@pytest.mark.parametrize(("model", "check"), [expect_failure("mymodels:unstable", "attention_logits", "no qk-norm")])
def test_known_unstable(model, check):
    check(model)
""",
    )
    pytester.syspathinsert()
    report = tmp_path / "report"
    result = pytester.runpytest_subprocess(*FAST, f"--trainstab-report={report}")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["mymodels:unstable*attention_logits*xfail"])
    data = json.loads((report / "trainstab-report.json").read_text())
    assert data["passed"] is True and [row["verdict"] for row in data["checks"]] == ["xfail"]


def test_a_report_only_check_warns_in_the_summary_and_fails_once_the_ini_asserts_it(pytester):
    pytester.makepyfile(
        mymodels=USER_MODELS,
        test_eps="""
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["mymodels:stable"], checks=["grad_rms_vs_eps"])
def test_gradients_stay_clear_of_eps(model, check):
    check(model)
""",
    )
    pytester.syspathinsert()
    large_eps = [*FAST, "--trainstab-set", "eps=1e-2"]  # Adam's eps far above every gradient
    warned = pytester.runpytest_subprocess(*large_eps)
    warned.assert_outcomes(passed=1)
    warned.stdout.fnmatch_lines(
        ["*grad_rms_vs_eps*warn", "trainstab: warn mymodels:stable grad_rms_vs_eps: *report-only*"]
    )
    pytester.makeini("[pytest]\ntrainstab_report_only = none\n")
    asserted = pytester.runpytest_subprocess(*large_eps)
    asserted.assert_outcomes(failed=1)
    asserted.stdout.fnmatch_lines(["*grad_rms_vs_eps failed for mymodels:stable (seed 0): gradient RMS of *"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--trainstab-seed=abc", "--trainstab-seed='abc': expected an integer"),
        ("--trainstab-report-only=speed", "expected none or check names from"),
        ("--trainstab-lrs=fast", "expected comma-separated numbers such as 1e-3,1e-2"),
        ("--trainstab-attention-logit-bound=big", "expected a finite number above 0"),
        ("--trainstab-device=tpu", "expected cpu, cuda or cuda:N"),
        ("--trainstab-precision=fp16", "expected fp32 or bf16"),
    ],
)
def test_bad_option_values_get_a_clear_usage_error(project, option, message):
    result = project.runpytest_subprocess(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_a_broken_model_fails_with_the_fix_not_a_pass(pytester):
    pytester.makepyfile(
        broken="def build(size):\n    raise RuntimeError('no such layer')\n",
        test_broken=USER_TEST.replace('"mymodels:stable", "mymodels:unstable"', '"broken:build"'),
    )
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(*FAST)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*model factory 'broken:build' raised RuntimeError: no such layer*"])


def test_pytest_start_up_does_not_import_torch(pytester):
    pytester.makepyfile("import sys\n\ndef test_light():\n    assert 'torch' not in sys.modules\n")
    result = pytester.runpytest_subprocess()  # the plugin loads through its pytest11 entry point
    result.assert_outcomes(passed=1)


def test_the_sweep_fixture_and_the_report_folder(project, tmp_path):
    project.makepyfile(
        test_fixture="""
def test_qk_layernorm_bounds_attention_logits(trainstab_sweep):
    with_norm = trainstab_sweep("mymodels:stable")
    without = trainstab_sweep("mymodels:unstable")
    assert with_norm.runs[-1].max_attention_logit < without.runs[-1].max_attention_logit
"""
    )
    report = tmp_path / "reports"
    result = project.runpytest_subprocess(*FAST, f"--trainstab-report={report}")
    result.assert_outcomes(passed=4, failed=1)
    data = json.loads((report / "trainstab-report.json").read_text())
    assert data["seed"] == 0
    assert {(row["model"], row["check"], row["passed"]) for row in data["checks"]} >= {
        ("mymodels:unstable", "attention_logits", False),
        ("mymodels:stable", "attention_logits", True),
    }


def test_an_unknown_profile_is_a_usage_error(project):
    result = project.runpytest_subprocess("--trainstab-profile=fastest")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*profile 'fastest' is unknown; use one of quick, default, thorough*"])


def test_a_bad_set_override_is_a_usage_error_at_start_up(project):
    result = project.runpytest_subprocess("--trainstab-set", "qk_layernorm=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--set qk_layernorm=maybe: expected true or false*"])
