"""One configuration for both front ends: ``trainstab check`` reads the pytest configuration's trainstab keys.

Run on one scratch project, pytest and ``trainstab check`` train the same
sweep, reach the same verdict with the same numbers, and each names its own
flags in its messages.
"""

import os
import re
import subprocess
import sys

import pytest

from test_plugin import USER_MODELS

pytest_plugins = ["pytester"]

PYPROJECT = """
[tool.pytest.ini_options]
trainstab_model = "mymodels:unstable"
trainstab_steps = "150"
trainstab_lrs = "1e-2,3e-1"
trainstab_set = ["z_loss=0"]
"""

TEST = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(checks=["attention_logits", "log_z"])
def test_training_stability(model, check):
    check(model)
"""


@pytest.fixture
def project(pytester):
    pytester.makepyfile(mymodels=USER_MODELS, test_stability=TEST)
    pytester.makepyprojecttoml(PYPROJECT)
    pytester.syspathinsert()
    return pytester


def _check(project, *args):
    env = {**os.environ, "PYTHONPATH": str(project.path)}
    command = [sys.executable, "-m", "trainstab", "check", "--no-progress", "--checks", "attention_logits,log_z", *args]
    return subprocess.run(command, cwd=project.path, env=env, capture_output=True, text=True, check=False)


def test_pytest_and_trainstab_check_read_one_configuration_and_say_the_same_in_their_own_flags(project):
    tested = project.runpytest_subprocess()
    tested.assert_outcomes(passed=1, failed=1)
    # The failure's own line (under CI=true pytest repeats it whole in the short summary, after "FAILED ... - ").
    failure = r"^attention_logits failed for mymodels:unstable \(seed 0\): (.*)"
    (pytest_message,) = re.findall(failure, tested.stdout.str(), flags=re.M)
    checked = _check(project)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "configuration: pyproject.toml (flags on the command line win)" in checked.stdout
    assert "trainstab check: model=mymodels:unstable seed=0 steps=150 lrs=0.01,0.3" in checked.stdout
    (cli_message,) = re.findall(r"FAIL attention_logits: (.*)", checked.stdout)
    assert "--trainstab-" not in checked.stdout
    assert "(override with --attention-logit-bound)" in cli_message
    assert cli_message == pytest_message.replace("--trainstab-", "--")  # the same numbers, its own flag
    z_in_pytest = re.search(r"mymodels:unstable\s+log_z\s+(\S+)", tested.stdout.str()).group(1)
    assert re.search(rf"│ log_z\s+│\s+{re.escape(z_in_pytest)} │", checked.stdout)  # same config (z_loss=0)


def test_a_flag_on_the_command_line_wins_over_the_configuration(project):
    checked = _check(project, "--model", "mymodels:stable", "--steps", "40")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "model=mymodels:stable seed=0 steps=40 lrs=0.01,0.3" in checked.stdout


def test_a_bad_value_in_the_configuration_names_the_key_and_the_file(project):
    project.makepyprojecttoml(PYPROJECT.replace('trainstab_steps = "150"', 'trainstab_steps = "many"'))
    checked = _check(project)
    assert checked.returncode == 2
    assert "trainstab_steps in pyproject.toml='many': expected a whole number of steps" in checked.stderr


def test_sweep_reads_the_same_configuration(project):
    env = {**os.environ, "PYTHONPATH": str(project.path)}
    command = [sys.executable, "-m", "trainstab", "sweep", "--no-progress", "--steps", "20"]
    swept = subprocess.run(command, cwd=project.path, env=env, capture_output=True, text=True, check=False)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "trainstab sweep: model=mymodels:unstable seed=0 lrs=0.01,0.3" in swept.stdout  # the file's; --steps wins
