"""A model whose steps take long is never silent, and a run may be given a time limit (issue 27, item 5).

A step that has not finished for ``--slow-step-seconds`` prints one line naming the model, the step and its
LRs, with progress on or off (at most one line per that interval). Training that outruns
``--time-limit-seconds`` is stopped, its workers ended, and the run is inconclusive: exit 4 with one line
naming the model, the limit and how far it got; under pytest the check fails with that line, as any
inconclusive check does. The slow model (tests/bad_models.py) sleeps in its forward; the limits here are
small, and the only times asserted are the subprocesses' generous timeouts.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainstab.cli import main
from trainstab.config import TimeLimits
from trainstab.errors import EXIT_BAD_INPUT, EXIT_INCONCLUSIVE, EXIT_PASSED, TrainstabError
from trainstab.options import parse_options, time_limits

pytest_plugins = ["pytester"]

TESTS = Path(__file__).parent
TINY = ["--set", "width=16", "--set", "batch_size=4", "--no-progress"]
#: One step (the third) sleeps 1.5 s; the others take milliseconds.
ONE_SLOW_STEP = "bad_models:slow_steps[seconds=1.5,first=2,last=2]"
#: Every step sleeps: 1000 of them would take minutes (a stack of 4 LRs: 4 forwards, 2 s, per step).
EVERY_STEP_SLOW = "bad_models:slow_steps[seconds=0.5]"
FIVE_LRS = "1e-3,3e-3,1e-2,3e-2,1e-1"  # two stacks (4 LRs and 1): two worker processes with --workers 2
QUIET = "no step finished in the last"


def _trainstab(*argv, env=None):
    """``trainstab argv`` in a process of its own, with tests/ importable (the slow models)."""
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "trainstab", *argv],
        capture_output=True,
        text=True,
        timeout=300,  # generous: the slow models would take minutes if the time limit did not stop them
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )


def _quiet_lines(out):
    return [line for line in out.splitlines() if QUIET in line]


def test_a_slow_step_in_this_process_prints_a_line_under_no_progress():
    result = _trainstab(
        "sweep", "--model", ONE_SLOW_STEP, "--steps", "4", "--lrs", "1e-2", "--workers", "1", *TINY,
        "--slow-step-seconds", "0.5",
    )  # fmt: skip
    assert result.returncode == EXIT_PASSED, result.stderr
    lines = _quiet_lines(result.stdout)
    assert lines, result.stdout
    expected = f"model 'bad_models:slow_steps[first=2,last=2,seconds=1.5]': {QUIET} "
    assert all(line.startswith(expected) and line.endswith("; still training") for line in lines)
    assert any("(step 3 of 4 at lr 0.01)" in line for line in lines)
    assert len(lines) <= 4  # at most one per 0.5 s of a 1.5 s step (and a little slack for a loaded machine)


def test_a_slow_step_in_a_worker_process_prints_a_line_naming_its_stack():
    result = _trainstab(
        "sweep", "--model", ONE_SLOW_STEP, "--steps", "4", "--lrs", FIVE_LRS, "--workers", "2", *TINY,
        "--slow-step-seconds", "0.5",
    )  # fmt: skip
    assert result.returncode == EXIT_PASSED, result.stderr
    lines = _quiet_lines(result.stdout)
    assert lines, result.stdout
    assert any(" at lrs 0.001,0.003,0.01,0.03" in line or " at lr 0.1" in line for line in lines)
    assert all(line.endswith("still training") for line in lines)


def test_a_fast_model_prints_no_slow_step_line(capsys):
    argv = ["sweep", "--model", "user_models:stable", "--steps", "3", "--lrs", "1e-2", "--workers", "1", *TINY]
    assert main(argv) == EXIT_PASSED
    assert QUIET not in capsys.readouterr().out


def test_past_its_time_limit_a_sweep_in_this_process_stops_inconclusive():
    result = _trainstab(
        "check", "--checks", "no_divergence", "--model", EVERY_STEP_SLOW, "--steps", "1000", "--lrs", "1e-2",
        *TINY, "--time-limit-seconds", "2",
    )  # fmt: skip
    assert result.returncode == EXIT_INCONCLUSIVE, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("trainstab: ")]
    assert line.startswith(
        "trainstab: inconclusive: model 'bad_models:slow_steps[seconds=0.5]': training stopped at the time limit "
        "of 2 s (--time-limit-seconds) after "
    )
    assert " of 1000 steps (0 of 1 stack(s) of LRs finished)" in line


def test_past_its_time_limit_a_pool_is_stopped_and_no_worker_outlives_the_run(tmp_path):
    pids = tmp_path / "pids"
    result = _trainstab(
        "sweep", "--model", EVERY_STEP_SLOW, "--steps", "1000", "--lrs", FIVE_LRS, "--workers", "2", *TINY,
        "--time-limit-seconds", "5", "--slow-step-seconds", "1",
        env={"TRAINSTAB_TEST_PIDS": str(pids)},
    )  # fmt: skip
    assert result.returncode == EXIT_INCONCLUSIVE, result.stderr
    # Returned at all: the pool waits for its workers on the way out, and each would train for half an hour.
    assert "training stopped at the time limit of 5 s (--time-limit-seconds) after " in result.stderr
    assert " of 2000 steps (0 of 2 stack(s) of LRs finished)" in result.stderr
    assert _quiet_lines(result.stdout)  # a stack of 4 LRs takes 2 s per step: quiet for the 1 s limit
    # The model was built in the run's own process (its preflight), and in each worker that got that far on a
    # loaded machine: none of them is left running.
    built = {int(pid) for pid in pids.read_text().split()}
    assert built and not [pid for pid in built if _alive(pid)]


def _alive(pid):
    """Whether process ``pid`` still runs (a zombie waiting to be reaped has ended)."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_the_limits_are_options_of_both_front_ends_and_refuse_bad_values(capsys):
    assert time_limits(parse_options({})) == TimeLimits()  # 10 s, and no time limit
    raw = {
        "slow-step-seconds": ("trainstab_slow_step_seconds", "2.5"),
        "time-limit-seconds": ("--trainstab-time-limit-seconds", "60"),
    }
    assert time_limits(parse_options(raw)) == TimeLimits(slow_step_seconds=2.5, time_limit_seconds=60.0)
    with pytest.raises(TrainstabError, match=r"--trainstab-time-limit-seconds='0': expected a finite number above 0"):
        parse_options({"time-limit-seconds": ("--trainstab-time-limit-seconds", "0")})
    assert main(["sweep", "--slow-step-seconds", "-1", "--no-progress"]) == EXIT_BAD_INPUT
    assert "--slow-step-seconds='-1': expected a finite number above 0" in capsys.readouterr().err


SLOW_SUITE = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["bad_models:slow_steps[seconds=0.5]"], checks=["no_divergence", "attention_logits"])
def test_slow_model(model, check):
    check(model)
"""


def test_under_pytest_a_slow_step_is_told_and_the_time_limit_fails_each_check_once_trained(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile(SLOW_SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:xdist", "-p", "no:cacheprovider", "--trainstab-steps=1000", "--trainstab-lrs=1e-2",
        "--trainstab-set=width=16", "--trainstab-set=batch_size=4", "--trainstab-slow-step-seconds=0.3",
        "--trainstab-time-limit-seconds=2", timeout=300,
    )  # fmt: skip
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "trainstab: model 'bad_models:slow_steps[seconds=0.5]': no step finished in the last " in out
    stopped = "training stopped at the time limit of 2 s (--trainstab-time-limit-seconds) after "
    assert out.count(stopped) >= 2  # each check reports it; the second without training to the limit again
    assert out.count(QUIET) <= 12  # trained once (2 s at most one line per 0.3 s), not once per check
