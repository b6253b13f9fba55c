"""Exit codes mean one thing each, in every subcommand: 0 pass, 1 a check failed, 2 bad input, 3 the model
crashed during training, 4 inconclusive. A crash is one line (the user's exception, file and line, LR and step),
never a failed check: under pytest it errors the test. The CLI takes what pytest takes, and nothing that would
change nothing; a log without a terminal shows a line per finished unit of work.

The models that crash are in tests/bad_models.py.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainstab.checks.battery import BATTERY, Thresholds
from trainstab.checks.registry import CHECKS
from trainstab.checks.scaling import ScalingConfig, ScalingThresholds
from trainstab.cli.main import CONFIGURES, main
from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig
from trainstab.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_CRASHED,
    EXIT_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_PASSED,
    ModelCrashed,
    TrainstabError,
)
from trainstab.run.options import OPTIONS
from trainstab.train.models import check_model

pytest_plugins = ["pytester"]

TESTS = Path(__file__).parents[1]
#: A tiny model and a short run: a check trains in about a second.
TINY = ["--profile", "quick", "--set", "width=16", "--set", "batch_size=4", "--no-progress"]
CRASH_AT_40 = ["check", "--model", "bad_models:crashes_at_step", "--steps", "45", "--lrs", "1e-2", *TINY]


def _run(argv):
    """``trainstab argv`` in this process: its exit status, whether returned or raised by argparse."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def _errors(err):
    return [line for line in err.splitlines() if line.startswith("trainstab: ")]


def test_a_model_that_crashes_at_step_40_exits_3_with_one_line_naming_the_exception_file_lr_and_step(capsys):
    assert _run([*CRASH_AT_40, "--checks", "no_divergence"]) == EXIT_CRASHED
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    (line,) = _errors(captured.err)
    assert line.startswith("trainstab: error: model 'bad_models:crashes_at_step' crashed at step 40 of 45 (lr=0.01)")
    assert "RuntimeError: cache slot 40 was never filled" in line
    assert f"({os.path.join('tests', 'bad_models.py')}:" in line and " in on_crash)" in line
    assert "--traceback prints the whole traceback" in line
    assert "checks passed" not in captured.out and "FAIL" not in captured.out  # never read as a check's verdict


def test_traceback_prints_the_whole_traceback_before_the_one_line(capsys):
    assert _run([*CRASH_AT_40, "--checks", "no_divergence", "--traceback"]) == EXIT_CRASHED
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert 'bad_models.py", line' in err and "RuntimeError: cache slot 40 was never filled" in err
    assert err.splitlines()[-1].startswith("trainstab: error: model 'bad_models:crashes_at_step' crashed at step 40")


def test_a_crash_names_the_lr_of_the_stack_member_that_raised(capsys):
    model = "bad_models:crashes_at_step[member=1,members=2,step=40]"  # the 2nd LR's forward at step 40
    argv = ["check", "--model", model, "--steps", "45", "--lrs", "1e-2,3e-1", "--checks", "no_divergence", *TINY]
    assert _run(argv) == EXIT_CRASHED
    (line,) = _errors(capsys.readouterr().err)
    assert "crashed at step 40 of 45 (lr=0.3)" in line


def test_sys_exit_in_the_model_during_training_is_a_crash_not_an_exit(capsys):
    argv = ["sweep", "--model", "bad_models:exits_at_step", "--steps", "10", "--lrs", "1e-2", *TINY]
    assert _run(argv) == EXIT_CRASHED
    (line,) = _errors(capsys.readouterr().err)
    assert "crashed at step 3 of 10 (lr=0.01): SystemExit: 7 (" in line and "bad_models.py:" in line


def test_a_killed_worker_is_a_crash_with_one_line(capsys):
    lrs = "1e-3,3e-3,1e-2,3e-2,1e-1"  # two stacks, so two worker processes
    argv = ["sweep", "--model", "bad_models:killed_at_step", "--steps", "10", "--lrs", lrs, "--workers", "2", *TINY]
    assert _run(argv) == EXIT_CRASHED
    err = capsys.readouterr().err
    (line,) = _errors(err)
    assert "crashed while training lrs" in line and "worker process died" in line and "SIGKILL" in line
    assert "Traceback" not in err


def test_nanogpts_view_on_non_contiguous_ids_fails_before_training_with_exit_2(capsys):
    argv = ["check", "--model", "bad_models:nanogpt", "--steps", "5", "--lrs", "1e-2", *TINY]
    assert _run(argv) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    (line,) = _errors(captured.err)
    assert "fails on a non-contiguous batch of token ids, as training passes them" in line
    assert "RuntimeError: view size is not compatible with input tensor's size and stride" in line
    assert "bad_models.py:" in line and ".reshape instead of .view" in line
    assert "block_size" not in line
    assert "trainstab check:" not in captured.out  # refused before the header: nothing trained


SMALL = ModelConfig(width=16, heads=2, depth=1, context_length=16)


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("bad_models:mask_assertion", "failed on its first forward, a (4, 16) batch of token ids: AssertionError: "),
        ("bad_models:no_cpu_kernel", "calls aten::_flash_attention_forward, which has no CPU kernel (tests/bad_mo"),
        ("bad_models:no_backward", "the backward pass of its first training step: RuntimeError: FlexAttention"),
    ],
)
def test_a_first_step_that_fails_for_another_reason_than_length_gets_no_length_hint(model, words):
    with pytest.raises(TrainstabError) as error:
        check_model(model, SMALL, 0, 4)
    assert words in str(error.value) and "bad_models.py:" in str(error.value)
    assert "block_size" not in str(error.value) and "context_length" not in str(error.value)


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("bad_models:nanogpt_as_is", "returned a tuple of 2 (as nanoGPT's (logits, loss))"),
        ("bad_models:nanogpt_last_position", "returned the logits of the last position only, shape (4, 1, "),
    ],
)
def test_nanogpts_two_inference_habits_are_named_with_the_fix(model, words):
    with pytest.raises(TrainstabError) as error:
        check_model(model, SMALL, 0, 4)
    assert words in str(error.value)
    assert "targets=idx.contiguous()" in str(error.value) and "recipes/nanogpt_models.py" in str(error.value)


def test_the_nanogpt_recipes_wrapper_passes_the_first_step():
    check_model("bad_models:nanogpt_recipe", SMALL, 0, 4)


def test_a_model_too_short_for_the_context_gets_the_length_hint():
    with pytest.raises(TrainstabError, match="but takes shorter sequences: IndexError") as error:
        check_model("user_models:short_context", SMALL, 0, 4)
    assert "check a hard-coded block_size or max_position_embeddings" in str(error.value)


def test_an_unstable_model_exits_1(capsys):
    argv = ["check", "--set", "qk_layernorm=false", "--steps", "40", "--lrs", "1e-2,3e-1", "--no-progress"]
    assert _run([*argv, "--attention-logit-bound", "100", "--checks", "attention_logits"]) == EXIT_FAILED
    assert "FAIL attention_logits" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["check", "--checks", "speed"], "unknown check(s) ['speed']"),
        (["check", "--widths", "32,48,64"], "--widths configures only attention_forecast, eps_forecast, sensitivity"),
        (["check", "--z-loss-pull", "0.1", "--checks", "no_divergence"], "--z-loss-pull configures only z_loss_eff"),
        (["check", "--baselines", "b", "--checks", "lr_transfer"], "--baselines configures only the battery's checks"),
        (["check", "--max-lr", "0.1", "--checks", "lr_sensitivity"], "--max-lr configures only no_divergence"),
        (["check", "--report-only", "log_z", "--checks", "no_divergence"], "--report-only configures only log_z, "),
        (["check", "--lrs", "1e-2", "--checks", "coordinates"], "--lrs configures only no_divergence"),
        (["fuzz", "--set", "width=64"], "the fuzz map sets width itself at every point"),
        (["sweep", "--workers", "2", "--executor", "ray"], "--workers 2 would change nothing"),
    ],
)
def test_bad_input_and_flags_that_would_change_nothing_exit_2_before_training(capsys, argv, words):
    assert _run([*argv, "--no-progress"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_check_takes_every_registered_check_and_the_flags_that_configure_it(capsys):
    argv = ["check", "--checks", "z_loss_effect", "--z-loss-pull", "1000", "--steps", "10", "--lrs", "1e-2", *TINY]
    assert _run(argv) == EXIT_FAILED  # a pull no z-loss reaches: the flag applies
    out = capsys.readouterr().out
    assert "FAIL z_loss_effect: z-loss 0.0001 pulled |log Z| toward 0 by" in out and "less than 1000" in out


def test_an_inconclusive_forecast_exits_4(capsys):
    argv = ["forecast", "--model", "bad_models:scattered_attention", "--widths", "32,48,64", "--steps", "3"]
    assert _run([*argv, "--lrs", "1e-2", "--set", "batch_size=4", "--no-progress"]) == EXIT_INCONCLUSIVE
    (line,) = _errors(capsys.readouterr().err)
    assert line.startswith("trainstab: inconclusive: the max attention logit at lr=0.01 does not follow a power law")


def test_an_inconclusive_scaling_check_exits_4_with_the_other_checks_verdicts(capsys):
    argv = ["check", "--model", "bad_models:scattered_attention", "--checks", "attention_forecast,no_divergence"]
    argv += ["--widths", "32,48,64", "--steps", "3", "--lrs", "1e-2", "--set", "batch_size=4", "--no-progress"]
    assert _run(argv) == EXIT_INCONCLUSIVE
    out = capsys.readouterr().out
    assert "INCONCLUSIVE attention_forecast: the max attention logit" in out
    assert "all 1 checks passed, 1 inconclusive" in out


def test_version(capsys):
    assert _run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("trainstab ")


@pytest.mark.parametrize("command", ["sweep", "check", "fuzz", "reproduce", "forecast"])
def test_each_subcommands_help_has_a_description_an_example_and_the_exit_codes(capsys, command):
    assert _run([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"example:\n  trainstab {command}" in out and "--traceback" in out
    codes = {0: "success", 1: "", 2: "bad input", 3: "the model crashed during training", 4: "inconclusive"}
    for code, meaning in codes.items():
        assert f"\n  {code}    {meaning}" in out


def test_every_option_that_configures_only_some_checks_is_known_to_the_cli():
    # An option setting a bound or a ladder configures only the checks that read it: a new one needs its entry
    # in CONFIGURES, or `trainstab check` would accept it where it changes nothing.
    bounds = (Thresholds, ScalingThresholds, ScalingConfig)
    partial = {o.name for o in OPTIONS if any(record in bounds for record, _ in o.sets)}
    assert partial <= set(CONFIGURES)
    assert all(checks and checks <= set(CHECKS) for checks in CONFIGURES.values())


def test_what_each_option_configures_follows_the_check_rows():
    # Derived from each check's options and reads (trainstab.checks.registry.configured_by), not a table kept by hand.
    assert CONFIGURES["widths"] == {"attention_forecast", "eps_forecast", "sensitivity_scaling", "lr_transfer"}
    assert CONFIGURES["depths"] == {"sensitivity_scaling"}
    assert "coordinates" not in CONFIGURES["lrs"] and "z_loss_effect" in CONFIGURES["steps"]  # it trains its own
    assert CONFIGURES["baselines"] == CONFIGURES["report-only"] == set(BATTERY)  # scaling checks have no baselines
    assert CONFIGURES["max-lr"] >= {"attention_logits", "attention_forecast", "z_loss_effect"}
    assert "lr_sensitivity" not in CONFIGURES["max-lr"]  # it reads the whole grid
    assert list(CONFIGURES)[:2] == ["max-lr", "attention-logit-bound"]  # the order refusals are tried in


def test_a_log_without_a_terminal_gets_a_line_per_finished_stack():
    lrs = "1e-3,3e-3,1e-2,3e-2,1e-1"  # two stacks of at most four LRs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    argv = ["sweep", "--steps", "5", "--lrs", lrs, "--set", "width=16", "--set", "batch_size=4", "--workers", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "trainstab", *argv], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines() if " trained: " in line]
    assert [line.split(" at ")[0] for line in lines] == [
        "stack 1/2 trained: lrs 0.001,0.003,0.01,0.03",
        "stack 2/2 trained: lrs 0.1",
    ]
    assert all(line.endswith(" s)") for line in lines)


def test_no_progress_prints_no_progress_lines(capsys):
    argv = ["sweep", "--steps", "5", "--lrs", "1e-2", "--set", "width=16", "--set", "batch_size=4"]
    assert _run(argv) == EXIT_PASSED
    assert "stack 1/1 trained: lrs 0.01 at width 16, depth 2 (" in capsys.readouterr().out
    assert _run([*argv, "--no-progress"]) == EXIT_PASSED
    assert " trained: " not in capsys.readouterr().out


def test_fuzz_prints_a_line_per_point(capsys):
    assert _run(["fuzz", "--budget", "2", "--set", "qk_layernorm=false"]) in (EXIT_PASSED, EXIT_FAILED)
    out = capsys.readouterr().out
    assert "example 1/2 trained (" in out and "example 2/2 trained (" in out


def test_reproduce_prints_a_line_per_finding(capsys, monkeypatch, tmp_path):
    import trainstab.paper.reproduce

    def measured(out, quick, seed, only, on_finding, on_sweep, model):  # two findings of one sweep each
        for index, key in enumerate(("qk_layernorm", "z_loss")):
            on_finding(key, index, 2)
            on_sweep(SweepConfig(lrs=(1e-2, 1e-1)))
        return SimpleNamespace(results=[], skipped=[], files=[], elapsed_seconds=0.0)

    monkeypatch.setattr(trainstab.paper.reproduce, "reproduce", measured)
    assert _run(["reproduce", "--out", str(tmp_path)]) == EXIT_PASSED
    out = capsys.readouterr().out
    assert "finding 1/2 qk_layernorm measured (" in out and "finding 2/2 z_loss measured (" in out
    assert out.count("training width 32, depth 2, lrs 0.01,0.1") == 2


CRASHING_SUITE = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["bad_models:crashes_at_step[step=3]"], checks=["no_divergence"])
def test_crashing_model(model, check):
    check(model)


@parametrize_with_checks(["user_models:stable"], checks=["attention_logits"])
def test_failing_check(model, check):
    check(model)


def test_crash_in_the_test_body(trainstab_sweep):
    trainstab_sweep("bad_models:crashes_at_step[step=3]")
"""
PYTEST_TINY = ["-p", "no:xdist", "-p", "no:cacheprovider", "--trainstab-steps=5", "--trainstab-lrs=1e-2"]
PYTEST_TINY += ["--trainstab-set=width=16", "--trainstab-set=batch_size=4", "--trainstab-attention-logit-bound=1e-3"]


def _crashing_suite(pytester, monkeypatch):
    """The suite in a pytest process of its own, as a user runs it, with bad_models importable.

    Not in this process: pytester's in-process run restores ``sys.modules`` after it, and a torch module it
    imported (torch._inductor, through use_deterministic_algorithms) cannot be imported a second time.
    """
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile(CRASHING_SUITE)


def test_under_pytest_a_crash_is_an_error_and_a_failed_check_a_failure(pytester, monkeypatch):
    _crashing_suite(pytester, monkeypatch)
    result = pytester.runpytest_subprocess(*PYTEST_TINY, "--junitxml=junit.xml")
    result.assert_outcomes(errors=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_crashing_model*",
            "trainstab: model 'bad_models:crashes_at_step[[]step=3]' crashed at step 3 of 5 (lr=0.01): RuntimeError: "
            "cache slot 3 was never filled (*bad_models.py:* in on_crash); --tb=long shows the whole traceback",
            "*ERROR at call of test_crash_in_the_test_body*",
            "*FAILED*test_failing_check*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    junit = (pytester.path / "junit.xml").read_text()
    assert junit.count("<error ") == 1 and junit.count("<failure ") == 2  # the body's crash: a failure to JUnit


def test_under_pytest_tb_long_shows_the_crash_traceback(pytester, monkeypatch):
    _crashing_suite(pytester, monkeypatch)
    result = pytester.runpytest_subprocess(*PYTEST_TINY, "--tb=long", "-k", "test_crashing_model")
    result.assert_outcomes(errors=1)
    traceback = ["Traceback (most recent call last):", "*bad_models.py*", "RuntimeError: cache slot 3*"]
    result.stdout.fnmatch_lines(traceback)


@pytest.mark.slow
def test_a_crash_in_a_ray_task_is_the_same_crash(monkeypatch):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is the optional extra: pip install 'trainstab[ray]'")
    from trainstab.train.ray_executor import ray_module
    from trainstab.train.sweep import run_sweep

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a Ray of this machine's cores, on loopback
    config = SweepConfig(
        model_name="bad_models:crashes_at_step[step=3]",
        model=SMALL,
        train=TrainConfig(steps=5, batch_size=4),
        lrs=(1e-2,),
        executor="ray",
    )
    ray = ray_module()
    try:
        with pytest.raises(ModelCrashed) as raised:
            run_sweep(config)
    finally:
        ray.shutdown()
    assert str(raised.value).startswith("model 'bad_models:crashes_at_step[step=3]' crashed at step 3 of 5 (lr=0.01)")


@pytest.mark.parametrize("command", [["init"], ["baselines"], ["baselines", "validate"]])
def test_the_commands_that_train_nothing_list_no_crash_or_inconclusive_status(capsys, command):
    assert _run([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"example:\n  trainstab {command[0]}" in out and "\n  0    success" in out and "\n  2    bad input" in out
    assert "\n  3    " not in out and "\n  4    " not in out
