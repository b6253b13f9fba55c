"""One configuration for both front ends: pytest and ``trainstab`` read the same file and the same typed values.

Every file kind pytest reads, with every kind of value (integers, floats, arrays of numbers and of names,
text, key=value lines), gives the plugin and ``trainstab check`` the same options in the same folder, on
pytest 8 and 9: neither looks for the file itself, both ask pytest. A bad value is the same one line, naming
the file, the key and what was expected, in both. Run on one scratch project, pytest and ``trainstab check``
train the same sweep, reach the same verdict with the same numbers, and each names its own flags.
"""

import dataclasses
import os
import re
import subprocess
import sys

import pytest

from trainstab.cli.main import build_parser, run_options
from trainstab.core.errors import TrainstabError
from trainstab.pytest_plugin.session import session_of
from trainstab.run.inifile import IniFile
from trainstab.run.options import PYTEST_FLAGS, RunOptions, options_from
from user_project import USER_MODELS

pytest_plugins = ["pytester"]

PYTEST_MAJOR = int(pytest.__version__.split(".")[0])

#: One setting of each kind, as an ini file writes it (text) and as TOML does (typed).
INI_SETTINGS = """
trainstab_model = mypkg.models:build
trainstab_profile = quick
trainstab_seed = 3
trainstab_steps = 40
trainstab_max_lr = 0.5
trainstab_target_params = 1e9
trainstab_lrs = 1e-3,1e-2
trainstab_widths = 32,48,64
trainstab_report_only = log_z
trainstab_baselines = baselines
trainstab_set =
    z_loss=0
    batch_size=4
"""
TOML_SETTINGS = """
trainstab_model = "mypkg.models:build"
trainstab_profile = "quick"
trainstab_seed = 3
trainstab_steps = 40
trainstab_max_lr = 0.5
trainstab_target_params = 1e9
trainstab_lrs = [1e-3, 1e-2]
trainstab_widths = [32, 48, 64]
trainstab_report_only = ["log_z"]
trainstab_baselines = "baselines"
trainstab_set = ["z_loss=0", "batch_size=4"]
"""
#: Every file kind pytest reads: its file, its table, its settings, and the first pytest that reads it.
FILE_KINDS = {
    "pytest.toml": ("pytest.toml", "[pytest]", TOML_SETTINGS, 9),
    ".pytest.toml": (".pytest.toml", "[pytest]", TOML_SETTINGS, 9),
    "pytest.ini": ("pytest.ini", "[pytest]", INI_SETTINGS, 8),
    "[tool.pytest]": ("pyproject.toml", "[tool.pytest]", TOML_SETTINGS, 9),
    "[tool.pytest.ini_options]": ("pyproject.toml", "[tool.pytest.ini_options]", TOML_SETTINGS, 8),
    "tox.ini": ("tox.ini", "[pytest]", INI_SETTINGS, 8),
    "setup.cfg": ("setup.cfg", "[tool:pytest]", INI_SETTINGS, 8),
}


def _settings_read(root):
    return RunOptions(
        model="mypkg.models:build",
        profile="quick",
        seed=3,
        steps=40,
        max_lr=0.5,
        target_params=1e9,
        lrs=(1e-3, 1e-2),
        widths=(32, 48, 64),
        report_only=frozenset({"log_z"}),
        baselines=str(root / "baselines"),  # relative to the file's folder, pytest's rootdir
        overrides=("z_loss=0", "batch_size=4"),
    )


def _in_pytest(pytester, *args):
    """The options the plugin reads, pytest started in the working folder (every key registered: strict)."""
    return session_of(pytester.parseconfigure("--strict-config", *args)).options


def _in_the_cli(command="check"):
    """The options ``trainstab <command>`` reads in the working folder, its flags spelled as the plugin's."""
    return dataclasses.replace(run_options(build_parser().parse_args([command])), flags=PYTEST_FLAGS)


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_every_file_kind_gives_both_front_ends_the_same_typed_values(pytester, kind):
    name, table, settings, first_pytest = FILE_KINDS[kind]
    (pytester.path / name).write_text(table + settings)
    # A file kind this pytest does not read (pytest.toml, [tool.pytest] on pytest 8) is read by neither.
    expected = _settings_read(pytester.path) if first_pytest <= PYTEST_MAJOR else RunOptions()
    assert _in_pytest(pytester) == expected
    assert _in_the_cli() == expected
    assert _in_the_cli("sweep") == expected


def test_pytests_order_of_files_in_one_folder_decides_for_both(pytester):
    # pytest's order within a folder, each with its own seed, and the first pytest that reads it.
    files = [
        ("pytest.toml", "[pytest]", 1, 9),
        ("pytest.ini", "[pytest]", 2, 8),
        ("pyproject.toml", "[tool.pytest.ini_options]", 3, 8),
        ("tox.ini", "[pytest]", 4, 8),
    ]
    for name, table, seed, _ in files:
        (pytester.path / name).write_text(f"{table}\ntrainstab_seed = {seed}\n")
    for name, _, seed, first_pytest in files:  # each file read, then taken away: the next one is read
        if first_pytest <= PYTEST_MAJOR:
            assert _in_pytest(pytester).seed == _in_the_cli().seed == seed
        (pytester.path / name).unlink()


def test_tool_pytest_beside_its_ini_options_is_pytests_own_error_or_choice_in_both(pytester):
    pytester.makepyprojecttoml('[tool.pytest]\ntrainstab_seed = 1\n\n[tool.pytest.ini_options]\ntrainstab_seed = "2"\n')
    if PYTEST_MAJOR < 9:  # pytest 8 reads [tool.pytest.ini_options] alone
        assert _in_pytest(pytester).seed == _in_the_cli().seed == 2
        return
    both = "Cannot use both [tool.pytest] (native TOML types) and [tool.pytest.ini_options]"
    with pytest.raises(pytest.UsageError, match=re.escape(both)):
        _in_pytest(pytester)
    with pytest.raises(TrainstabError, match=re.escape(both)):
        _in_the_cli()


def test_from_a_subfolder_both_find_the_file_above_and_resolve_its_folders_from_the_rootdir(pytester, monkeypatch):
    pytester.makeini("[pytest]\ntrainstab_seed = 5\ntrainstab_cache = kept\n")
    below = pytester.mkdir("below")
    (below / "setup.cfg").write_text("[metadata]\nname = below\n")  # no [tool:pytest]: not pytest's, looked past
    monkeypatch.chdir(below)
    for options in (_in_pytest(pytester), _in_the_cli()):
        assert (options.seed, options.cache) == (5, str(pytester.path / "kept"))


def test_pytests_override_ini_wins_over_the_file_and_a_bad_one_is_named_as_given(pytester):
    pytester.makeini("[pytest]\ntrainstab_seed = 5\ntrainstab_lrs = 1e-2\n")
    assert (_in_pytest(pytester, "-o", "trainstab_seed=6").seed, _in_pytest(pytester).seed) == (6, 5)
    with pytest.raises(pytest.UsageError, match=re.escape("-o trainstab_lrs='x': expected comma-separated numbers")):
        _in_pytest(pytester, "-o", "trainstab_lrs=x")


def test_each_toml_type_an_option_can_mean_is_taken_and_empty_arrays_mean_none(tmp_path):
    values = {
        "trainstab_max_lr": 1,  # an integer where a number is expected
        "trainstab_target_params": 1_000_000_000,
        "trainstab_depths": ["2", 4],  # text and integers mixed, as a hand-edited file may have them
        "trainstab_lrs": "1e-3, 1e-2",  # text with spaces, as in an ini file
        "trainstab_report_only": [],  # no check is report-only
        "trainstab_ignore_params": [],  # no parameter is left out
    }
    options = options_from({}, IniFile(tmp_path / "pytest.toml", tmp_path, values))
    assert (options.max_lr, options.target_params, options.depths, options.lrs) == (1.0, 1e9, (2, 4), (1e-3, 1e-2))
    assert (options.report_only, options.ignore_params) == (frozenset(), ())
    assert isinstance(options.max_lr, float) and isinstance(options.target_params, float)


#: A bad value in each way a file can hold one: (file, text, the one message both front ends give, first pytest).
BAD_VALUES = {
    "a boolean for a number": (
        "pyproject.toml",
        "[tool.pytest]\ntrainstab_seed = true\n",
        "pyproject.toml: trainstab_seed=true: expected an integer from 0 to 2**63-1, not a boolean",
        9,
    ),
    "a float for an integer": (
        "pytest.toml",
        "[pytest]\ntrainstab_steps = 1.5\n",
        "pytest.toml: trainstab_steps=1.5: expected a whole number of steps from 1 to 1000000, not a float",
        9,
    ),
    "a number for a name": (
        ".pytest.toml",
        "[pytest]\ntrainstab_device = 0\n",
        ".pytest.toml: trainstab_device=0: expected cpu, cuda or cuda:N (N the GPU's index), not an integer",
        9,
    ),
    "an array for a number": (
        "pytest.toml",
        "[pytest]\ntrainstab_max_lr = [0.1]\n",
        "pytest.toml: trainstab_max_lr=[0.1]: expected a finite number above 0, not an array",
        9,
    ),
    "text in an array of integers": (
        "pyproject.toml",
        '[tool.pytest.ini_options]\ntrainstab_widths = [32, "wide"]\n',
        "pyproject.toml: trainstab_widths=[32, 'wide']: expected comma-separated integers such as 32,48,64, "
        "or a TOML array such as [32, 48, 64]",
        8,
    ),
    "an empty learning-rate grid": (
        "pyproject.toml",
        "[tool.pytest.ini_options]\ntrainstab_lrs = []\n",
        "pyproject.toml: trainstab_lrs=[]: expected comma-separated numbers such as 1e-3,1e-2, "
        "or a TOML array such as [1e-3, 1e-2]",
        8,
    ),
    "a number among key=value lines": (
        "pyproject.toml",
        '[tool.pytest.ini_options]\ntrainstab_set = ["z_loss=0", 1]\n',
        "pyproject.toml: trainstab_set=['z_loss=0', 1]: expected key=value lines "
        '(in TOML an array of strings such as ["z_loss=0"])',
        8,
    ),
    "an unknown check in an ini file": (
        "setup.cfg",
        "[tool:pytest]\ntrainstab_report_only = log_z,speed\n",
        "setup.cfg: trainstab_report_only='log_z,speed': expected none or check names from",
        8,
    ),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_a_bad_value_is_the_same_one_message_in_both_front_ends(pytester, case):
    name, text, message, first_pytest = BAD_VALUES[case]
    if first_pytest > PYTEST_MAJOR:
        pytest.skip(f"pytest {PYTEST_MAJOR} does not read {text.splitlines()[0]} in {name}")
    (pytester.path / name).write_text(text)
    with pytest.raises(pytest.UsageError) as in_pytest:
        _in_pytest(pytester)
    with pytest.raises(TrainstabError) as in_the_cli:
        _in_the_cli()
    assert str(in_pytest.value) == str(in_the_cli.value)
    assert str(in_the_cli.value).startswith(message)


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


def _cli(project, command, *args):
    # PYTHONPATH is added to, not replaced: CI runs these tests on pytest 8 from a folder put on it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(project.path), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "trainstab", command, "--no-progress", *args]
    return subprocess.run(command, cwd=project.path, env=env, capture_output=True, text=True, check=False)


def _check(project, *args):
    return _cli(project, "check", "--checks", "attention_logits,log_z", *args)


@pytest.mark.slow
def test_pytest_and_trainstab_check_read_one_configuration_and_say_the_same_in_their_own_flags(project):
    tested = project.runpytest_subprocess()
    tested.assert_outcomes(passed=1, failed=1)
    # The failure's own line (under CI=true pytest repeats it whole in the short summary, after "FAILED ... - ").
    failure = r"^attention_logits failed for mymodels:unstable \(seed 0\): (.*)"
    (pytest_message,) = re.findall(failure, tested.stdout.str(), flags=re.M)
    checked = _check(project)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "configuration: pyproject.toml (flags on the command line win)" in checked.stdout
    # The file's trainstab_set is named in the header: what was gated is the model with it.
    assert "trainstab check: model=mymodels:unstable --set z_loss=0 seed=0 steps=150 lrs=0.01,0.3" in checked.stdout
    assert "trainstab: seed=0 default model=mymodels:unstable --trainstab-set z_loss=0" in tested.stdout.str()
    (cli_message,) = re.findall(r"FAIL attention_logits: (.*)", checked.stdout)
    assert "--trainstab-" not in checked.stdout
    assert "(override with --attention-logit-bound)" in cli_message
    assert cli_message == pytest_message.replace("--trainstab-", "--")  # the same numbers, its own flag
    z_in_pytest = re.search(r"mymodels:unstable\s+log_z\s+(\S+)", tested.stdout.str()).group(1)
    assert re.search(rf"│ log_z\s+│\s+{re.escape(z_in_pytest)} │", checked.stdout)  # same config (z_loss=0)


@pytest.mark.slow
def test_a_flag_on_the_command_line_wins_over_the_configuration(project):
    checked = _check(project, "--model", "mymodels:stable", "--steps", "40")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "model=mymodels:stable --set z_loss=0 seed=0 steps=40 lrs=0.01,0.3" in checked.stdout


def test_a_bad_value_in_the_configuration_is_one_line_and_a_usage_error_in_both_front_ends(project):
    project.makepyprojecttoml(PYPROJECT.replace('trainstab_steps = "150"', 'trainstab_steps = "many"'))
    message = "pyproject.toml: trainstab_steps='many': expected a whole number of steps from 1 to 1000000"
    tested = project.runpytest_subprocess()
    assert tested.ret == pytest.ExitCode.USAGE_ERROR
    assert message in tested.stderr.str() and "Traceback" not in tested.stderr.str()
    checked = _check(project)
    assert checked.returncode == 2
    assert message in checked.stderr and "Traceback" not in checked.stderr


@pytest.mark.slow
def test_sweep_reads_the_same_configuration(project):
    swept = _cli(project, "sweep", "--steps", "20")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert (
        "trainstab sweep: model=mymodels:unstable --set z_loss=0 seed=0 lrs=0.01,0.3" in swept.stdout
    )  # the file's; --steps wins
