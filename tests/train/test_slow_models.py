"""A model whose steps take long is never silent, and a run may be given a time limit (issue 27, item 5).

A step that has not finished for ``--slow-step-seconds`` prints one line naming the model, the step and its
LRs, with progress on or off (at most one line per that interval). Training that outruns
``--time-limit-seconds`` is stopped, its workers ended, and the run is inconclusive: exit 4 with one line
naming the model, the limit and how far it got; under pytest the check fails with that line, as any
inconclusive check does. The slow model (tests/bad_models.py) sleeps in its forward; the limits here are
small, and the only times asserted are the subprocesses' generous timeouts: how many lines a run prints
depends on how loaded the machine is, so "at most one line per interval" is held by the watch's own tests,
on a clock they step by hand.
"""

import contextlib
import dataclasses
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import bad_models
from trainstab.cli.main import main
from trainstab.core.config import SweepConfig, TimeLimits
from trainstab.core.errors import EXIT_BAD_INPUT, EXIT_INCONCLUSIVE, EXIT_PASSED, TrainstabError
from trainstab.run.options import parse_options, time_limits
from trainstab.train.sweep import _stop, _Watch, pool_context, run_sweeps

# The long tier (`pytest -m long`, after the README's command in .ci/run):
# models that sleep through their steps, and runs stopped at their time limit.
pytestmark = pytest.mark.long
pytest_plugins = ["pytester"]

TESTS = Path(__file__).parents[1]
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
    # A stack of 4 LRs takes 2 s per step: quiet for the 1 s limit; and workers that take the whole 5 s to
    # start on a loaded machine are told too (no stack started).
    assert _quiet_lines(result.stdout)
    # The model was built in the run's own process (its preflight), and in each worker that got that far on a
    # loaded machine: none of them is left running.
    built = {int(pid) for pid in pids.read_text().split()}
    assert built and not [pid for pid in built if _alive(pid)]


def test_past_its_time_limit_a_worker_that_ignores_sigterm_is_killed(tmp_path):
    pids = tmp_path / "pids"
    result = _trainstab(
        "sweep", "--model", "bad_models:ignores_sigterm[seconds=0.5]", "--steps", "1000", "--lrs", FIVE_LRS,
        "--workers", "2", *TINY, "--time-limit-seconds", "5",
        env={"TRAINSTAB_TEST_PIDS": str(pids)},
    )  # fmt: skip
    # Returned at all: a worker that ignores SIGTERM gets SIGKILL after the grace, or the pool waits for it.
    assert result.returncode == EXIT_INCONCLUSIVE, result.stderr
    assert "training stopped at the time limit of 5 s (--time-limit-seconds) after " in result.stderr
    built = {int(pid) for pid in pids.read_text().split()}
    assert built and not [pid for pid in built if _alive(pid)]


def test_stop_kills_a_worker_that_ignores_sigterm(tmp_path):
    ready = tmp_path / "ready"
    with ProcessPoolExecutor(1, mp_context=pool_context()) as pool:
        pool.submit(bad_models.ignore_sigterm_and_sleep, str(ready))
        deadline = time.monotonic() + 120  # generous: a worker starting on a loaded machine
        while not ready.exists():
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        (worker,) = pool._processes.values()
        _stop(pool)
    # Ended, where SIGTERM alone would leave it sleeping, and the pool's thread (joined at the interpreter's exit)
    # waiting for it: the sentinel, not join(), since that thread reads the exit status.
    assert multiprocessing.connection.wait([worker.sentinel], timeout=60)
    assert not _alive(worker.pid)


class _Clock:
    """A clock a test steps by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _watch(lrs_of_stacks, slow_step_seconds=1.0, time_limit_seconds=None):
    """A watch over stacks of ``lrs_of_stacks`` (4 steps each), its clock, and the (time, line) pairs it says."""
    config = SweepConfig(model_name="m")
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=4))
    clock, said = _Clock(), []
    limits = TimeLimits(slow_step_seconds=slow_step_seconds, time_limit_seconds=time_limit_seconds)
    watch = _Watch([(config, lrs) for lrs in lrs_of_stacks], limits, lambda line: said.append((clock(), line)), clock)
    return watch, clock, said


def _look_until(watch, clock, end, every=0.25):
    """Look every quarter second (the pool's and the watch thread's pace) up to time ``end``."""
    while clock.now < end:
        clock.now += every
        watch.look()


def test_a_quiet_stack_is_told_at_most_once_per_interval_counted_from_its_start():
    watch, clock, said = _watch([[0.01]])
    clock.now = 1.0
    watch.seen(0, 0)  # started 1 s after the watch: its model is built in its quiet time from here
    _look_until(watch, clock, 1.75)
    assert said == []  # quiet 0.75 s, not the watch's 1.75 s
    _look_until(watch, clock, 5.0)
    assert [when for when, _ in said] == [2.0, 3.0, 4.0, 5.0]
    assert said[0][1] == "model 'm': no step finished in the last 1.0 s (step 1 of 4 at lr 0.01); still training"
    watch.seen(0, 1)  # a step finished: quiet again from now, and still one line per interval at most
    _look_until(watch, clock, 6.0)
    assert [when for when, _ in said][4:] == [6.0]
    assert "in the last 1.0 s (step 2 of 4 at lr 0.01)" in said[4][1]
    watch.finished(0)
    _look_until(watch, clock, 9.0)
    assert len(said) == 5  # a finished stack is never quiet


def test_several_quiet_stacks_make_one_line_per_interval_naming_the_quietest():
    watch, clock, said = _watch([[0.001, 0.003], [0.1]])
    watch.seen(0, 0)
    clock.now = 0.5
    watch.seen(1, 0)
    _look_until(watch, clock, 4.0)
    assert [when for when, _ in said] == [1.0, 2.0, 3.0, 4.0]  # two quiet stacks: still one line per interval
    assert "in the last 1.0 s (step 1 of 4 at lrs 0.001,0.003); still training" in said[0][1]
    assert said[1][1] == (
        "model 'm': no step finished in the last 2.0 s (step 1 of 4 at lrs 0.001,0.003; 1 other stack(s) too); "
        "still training"
    )


def test_no_stack_started_is_told_once_per_interval_and_a_moving_stack_keeps_the_others_waiting_quietly():
    watch, clock, said = _watch([[0.001], [0.1]])
    _look_until(watch, clock, 2.5)  # the worker processes are still starting
    assert said == [
        (1.0, "model 'm': no step finished in the last 1.0 s (2 stack(s) of LRs waiting for a worker process to "
         "start them); still starting"),
        (2.0, "model 'm': no step finished in the last 2.0 s (2 stack(s) of LRs waiting for a worker process to "
         "start them); still starting"),
    ]  # fmt: skip
    watch.seen(0, 0)
    for steps in range(1, 9):  # the first stack steps every half second; the second waits for a free worker
        clock.now += 0.5
        watch.seen(0, steps)
        watch.look()
    assert len(said) == 2


def test_the_time_limit_counts_from_the_watch_on_its_clock():
    watch, clock, _ = _watch([[0.01]], time_limit_seconds=2.0)
    clock.now = 2.0
    assert not watch.out_of_time()
    clock.now = 2.25
    assert watch.out_of_time()


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
    # Ray's tasks are not watched: a time limit there would not hold, so it is refused, from a flag or a file.
    on_ray = {"executor": ("trainstab_executor", "ray"), "time-limit-seconds": ("--trainstab-time-limit-seconds", "60")}
    with pytest.raises(TrainstabError, match=r"^--trainstab-time-limit-seconds='60': the time limit does not apply on "
                       r"the Ray executor \(trainstab_executor=ray\) yet") as refused:  # fmt: skip
        parse_options(on_ray)
    assert "\n" not in str(refused.value)
    assert parse_options({"executor": ("--trainstab-executor", "ray")}).executor == "ray"  # without a limit: fine
    assert main(["sweep", "--executor", "ray", "--time-limit-seconds", "60", "--no-progress"]) == EXIT_BAD_INPUT
    assert "--time-limit-seconds='60': the time limit does not apply on the Ray executor (--executor=ray)" in (
        capsys.readouterr().err
    )
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


def test_under_pytest_a_slow_step_is_told_and_the_time_limit_fails_each_check_once_trained(
    pytester, monkeypatch, tmp_path
):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    pids = tmp_path / "pids"
    monkeypatch.setenv("TRAINSTAB_TEST_PIDS", str(pids))
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
    # Trained once, not once per check: the model was built twice (the preflight's check, then the stack of one
    # LR), where a second training would build it again.
    assert len(pids.read_text().split()) == 2


def test_a_stack_quiet_after_its_last_step_is_said_to_be_evaluating_not_on_a_step_past_the_end():
    watch, clock, said = _watch([[0.01]])
    watch.seen(0, 4)  # all 4 steps done; the held-out evaluation's forward counts no step
    _look_until(watch, clock, 1.0)
    assert said == [
        (
            1.0,
            "model 'm': no step finished in the last 1.0 s (evaluating after its last step, 4 at lr "
            "0.01); still training",
        )
    ]


def test_the_library_refuses_a_time_limit_on_ray_as_the_front_ends_do():
    config = SweepConfig(executor="ray")
    with pytest.raises(TrainstabError, match="the time limit does not apply on the Ray executor"):
        run_sweeps([config], limits=TimeLimits(time_limit_seconds=5.0))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from Linux's /proc")
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_run_killed_from_outside_leaves_no_worker_training(tmp_path, signal_name):
    # A CI job's timeout or a cancelled pipeline kills the run itself: it cannot stop its pool, so each worker
    # reads a pipe whose only write end the run holds, and exits when it closes (sweep._end_with_the_run).
    pids = tmp_path / "pids"
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    argv = ["sweep", "--model", EVERY_STEP_SLOW, "--steps", "1000", "--lrs", FIVE_LRS, "--workers", "2", *TINY]
    helpers = set()
    run = subprocess.Popen(
        [sys.executable, "-m", "trainstab", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": path, "TRAINSTAB_TEST_PIDS": str(pids)},
    )
    try:
        started = time.monotonic()  # the run's preflight builds the model once, then each worker does
        while time.monotonic() - started < 120 and len(_built(pids) - {run.pid}) < 2:
            time.sleep(0.2)
        workers = _built(pids) - {run.pid}
        assert len(workers) == 2, "the workers did not start within 2 minutes"
        helpers = _children(run.pid)  # multiprocessing's fork server and resource tracker
        os.kill(run.pid, getattr(signal, signal_name))
        run.wait(timeout=30)
        deadline = time.monotonic() + 30  # generous on a loaded machine; idle, they are gone within ~1 s
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers | helpers):
            time.sleep(0.2)
        assert not [pid for pid in workers | helpers if _alive(pid)]
    finally:  # whatever failed above, nothing of this run trains on
        run.kill()
        run.wait()
        for pid in _built(pids) | helpers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _children(pid):
    """The pids of the processes whose parent is ``pid`` (Linux's /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def _built(pids):
    """The pids of the processes that have built the slow model so far."""
    return {int(pid) for pid in pids.read_text().split()} if pids.exists() else set()
