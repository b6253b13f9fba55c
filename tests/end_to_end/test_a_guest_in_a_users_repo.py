"""trainstab is a guest in a user's repository: it changes nothing it was not asked to change.

Each test is a user repository built with pytester, with none of our conftest: the user's other tests keep
their Hypothesis settings, a session without trainstab tests leaves nothing behind, ``-p no:trainstab``
works, warnings can be gated on, parameter names are the model's own, and worker processes are not forked
from a threaded parent.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from user_project import USER_MODELS

TESTS = Path(__file__).parents[1]  # bad_models and user_models

# The long tier (`pytest -m long`, after the README's command in .ci/run):
# pytest runs of a user's project, each training.
pytestmark = pytest.mark.long
pytest_plugins = ["pytester"]

# The user's own property test, unrelated to trainstab: it counts its examples and prints its settings.
UNRELATED_PROPERTY = """
from hypothesis import given, settings, strategies as st

SEEN = []


@given(st.integers())
def test_addition_commutes(x):
    SEEN.append(x)
    assert x + 1 == 1 + x


def test_report():
    current = settings()
    print(
        f"EXAMPLES={len(SEEN)} PROFILE={settings.get_current_profile_name()} max_examples={current.max_examples} "
        f"deadline={current.deadline} derandomize={current.derandomize} database={type(current.database).__name__}"
    )
"""


def _settings_line(result) -> str:
    (line,) = [line for line in result.stdout.lines if "EXAMPLES=" in line]
    return line[line.index("EXAMPLES=") :]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("HYPOTHESIS_PROFILE", "CI", "TRAINSTAB_SESSION"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("ci", [None, "true"], ids=["off-ci", "on-ci"])
def test_a_users_unrelated_property_test_keeps_exactly_its_hypothesis_settings(pytester, clean_env, ci):
    if ci is not None:
        clean_env.setenv("CI", ci)
    pytester.makepyfile(test_props=UNRELATED_PROPERTY)
    with_plugin = pytester.runpytest_subprocess("-s")
    without = pytester.runpytest_subprocess("-s", "-p", "no:trainstab")
    with_plugin.assert_outcomes(passed=2)
    without.assert_outcomes(passed=2)
    assert _settings_line(with_plugin) == _settings_line(without)
    assert "EXAMPLES=100 " in _settings_line(with_plugin)  # Hypothesis' own default, not trainstab-dev's 5


def test_a_training_property_gets_the_shipped_settings_and_its_neighbour_keeps_its_own(pytester, clean_env):
    pytester.makepyfile(
        test_props=UNRELATED_PROPERTY
        + """

from trainstab.fuzz import training_settings


@training_settings
@given(st.integers())
def test_pretends_to_train(x):
    print("TRAINING", settings())
"""
    )
    result = pytester.runpytest_subprocess("-s", "--hypothesis-show-statistics")
    result.assert_outcomes(passed=3)
    assert "EXAMPLES=100 " in _settings_line(result)
    stats = result.stdout.str()
    assert re.search(r"test_pretends_to_train:(?:(?!test_props).)*- 5 passing, 0 failing", stats, re.S), stats
    assert "deadline=None" in stats


def _files_after_a_run(folder, *args) -> list[str]:
    """Every file and folder left in a fresh project of one plain test after ``pytest *args`` ran in it."""
    folder.mkdir()
    (folder / "test_plain.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args], cwd=folder, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    header = [line for line in done.stdout.splitlines() if line.startswith("trainstab")]
    assert len(header) <= (0 if "no:trainstab" in args else 1), header
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_a_session_without_trainstab_tests_leaves_nothing_behind(tmp_path, clean_env):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    clean_env.setenv("TMPDIR", str(temporary))
    with_plugin = _files_after_a_run(tmp_path / "with")
    assert list(temporary.iterdir()) == []  # the session folder was removed
    # The same project without the plugin leaves the same files: pytest's own cache, nothing of ours.
    assert with_plugin == _files_after_a_run(tmp_path / "without", "-p", "no:trainstab")
    assert ".pytest_cache" in with_plugin and not any("trainstab" in name for name in with_plugin)


def test_the_plugin_can_be_turned_off_in_a_repo_configured_for_it(pytester, clean_env):
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\ntrainstab_seed = '3'\n")
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:trainstab")
    result.assert_outcomes(passed=1)
    assert "trainstab:" not in result.stdout.str()


# A sweep small enough for a test: one LR, a few steps.
TINY = ["--trainstab-steps=8", "--trainstab-lrs=0.01", "--trainstab-profile=quick"]

USER_TEST = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["mymodels:stable"], checks=["attention_logits"])
def test_training_stability(model, check):
    check(model)
"""


@pytest.fixture
def project(pytester, clean_env):
    pytester.makepyfile(mymodels=USER_MODELS, test_stability=USER_TEST)
    pytester.syspathinsert()
    return pytester


def test_a_report_only_verdict_over_its_bound_is_a_warning_a_suite_can_turn_into_a_failure(project):
    report_only = [*TINY, "--trainstab-report-only=attention_logits", "--trainstab-attention-logit-bound=0.01"]
    warned = project.runpytest_subprocess(*report_only)
    warned.assert_outcomes(passed=1, warnings=1)
    warned.stdout.fnmatch_lines(["*TrainstabWarning: mymodels:stable / attention_logits is report-only and over*"])
    gated = project.runpytest_subprocess(*report_only, "-W", "error::trainstab.TrainstabWarning")
    gated.assert_outcomes(failed=1)
    gated.stdout.fnmatch_lines(["*TrainstabWarning: mymodels:stable / attention_logits is report-only*"])


def test_baselines_recorded_in_another_environment_warn_in_the_test_that_reads_them(project):
    folder = project.path / "baselines"
    project.runpytest_subprocess(*TINY, f"--trainstab-baselines={folder}", "--trainstab-update-baseline")
    (baseline,) = folder.glob("*/*.json")
    data = json.loads(baseline.read_text())
    data["environment"]["torch"] = "1.0.0"
    baseline.write_text(json.dumps(data, indent=2) + "\n")
    result = project.runpytest_subprocess(*TINY, f"--trainstab-baselines={folder}")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*recorded in another environment (torch 1.0.0 -> *)*"])
    gated = project.runpytest_subprocess(
        *TINY, f"--trainstab-baselines={folder}", "-W", "error::trainstab.TrainstabWarning"
    )
    gated.assert_outcomes(failed=1)


UNUSED_SCALE = """

import torch


class WithUnused(Tiny):
    def __init__(self, size):
        super().__init__(size, qk_norm=True)
        self.unused_scale = torch.nn.Parameter(torch.ones(1))  # never used in forward: it gets no gradient


def with_unused(size):
    return WithUnused(size)
"""


def test_parameters_are_named_as_the_model_names_them_and_a_pattern_matching_none_is_refused(project):
    project.makepyfile(mymodels=USER_MODELS + UNUSED_SCALE)
    project.makepyfile(
        test_stability=USER_TEST.replace("mymodels:stable", "mymodels:with_unused").replace(
            "attention_logits", "parameters_move"
        )
    )
    dead = project.runpytest_subprocess(*TINY)
    dead.assert_outcomes(failed=1)
    dead.stdout.fnmatch_lines(["*never received a gradient: unused_scale;*"])
    assert "stacked" not in dead.stdout.str()
    project.runpytest_subprocess(*TINY, "--trainstab-ignore-params=unused_scale").assert_outcomes(passed=1)
    typo = project.runpytest_subprocess(*TINY, "--trainstab-ignore-params=unused_sacle")
    typo.assert_outcomes(failed=1)
    typo.stdout.fnmatch_lines(
        [
            "*--trainstab-ignore-params (or trainstab_ignore_params) pattern 'unused_sacle' matches no parameter"
            "*closest are unused_scale*"
        ]
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the start method chosen on Linux")
def test_sweep_workers_are_not_forked_from_a_threaded_parent():
    from trainstab.train.sweep import pool_context

    assert pool_context().get_start_method() == "forkserver"


def test_a_suite_that_turns_every_warning_into_an_error_trains_in_worker_processes(project):
    project.makeini("[pytest]\nfilterwarnings =\n    error\n")
    result = project.runpytest_subprocess("--trainstab-steps=8", "--trainstab-lrs=0.001,0.01,0.1,0.3,1")
    result.assert_outcomes(passed=1)


SWEEP_SCRIPT = """
from trainstab import SweepConfig, TrainConfig, run_sweep

{guard}result = run_sweep(SweepConfig(train=TrainConfig(steps=3), lrs=(0.001, 0.01, 0.1, 0.3, 1.0), workers=2))
{indent}print("swept", len(result.runs))
"""


def test_a_script_that_sweeps_runs_with_the_guard_and_is_told_to_add_it_without(tmp_path):
    guarded = tmp_path / "guarded.py"
    guarded.write_text(SWEEP_SCRIPT.format(guard='if __name__ == "__main__":\n    ', indent="    "))
    done = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and "swept 5" in done.stdout, done.stderr
    unguarded = tmp_path / "unguarded.py"
    unguarded.write_text(SWEEP_SCRIPT.format(guard="", indent=""))
    done = subprocess.run([sys.executable, str(unguarded)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0
    assert 'put the call under if __name__ == "__main__":' in done.stderr


def test_a_model_that_crashes_under_given_errors_the_fuzz_test_instead_of_failing_it(pytester, clean_env):
    pytester.makepyfile(
        test_fuzz="""
        from hypothesis import given
        from trainstab.fuzz import assert_stable, training_settings
        from trainstab.strategies import stability_region


        @training_settings
        @given(stability_region(lr=(1e-3, 1e-2), widths=(16,)))
        def test_the_region_trains_stably(point):
            assert_stable(point, model="bad_models:crashes_at_step[step=2]")
        """
    )
    # A pytest process of its own (an in-process run would drop torch modules it cannot import twice).
    clean_env.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*crashed at step 2*RuntimeError: cache slot 2 was never filled*"])


def test_a_sweep_pytorch_ran_without_deterministic_kernels_warns_in_the_test():
    import types
    import warnings

    from trainstab.core.errors import TrainstabWarning
    from trainstab.pytest_plugin.testing import _warn

    verdict = types.SimpleNamespace(
        label="mymodels:stable", check="attention_logits", verdict="pass", environment_drift=(), baseline=None
    )
    sweep = types.SimpleNamespace(
        environment={"reproducibility": "not repeatable: no deterministic kernel for aten::x"}
    )
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _warn(verdict, sweep)
        _warn(verdict, None)  # a check that reads no sweep: nothing to say
    assert [type(w.message) for w in seen] == [TrainstabWarning]
    assert "not repeatable: no deterministic kernel for aten::x" in str(seen[0].message)
