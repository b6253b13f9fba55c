"""Bad input and failing writes: one clear line, the right exit code, no user file changed, never false success.

Each case runs the front end a user runs (``trainstab`` in-process through ``main``, pytest through
pytester) and asserts the exit code and the one line that names what was wrong and how to fix it.
"""

import errno
import os

import pytest

from trainstab.cli.main import EXIT_FAILED, main

pytest_plugins = ["pytester"]

QUICK_CHECK = ["check", "--steps", "8", "--lrs", "1e-2,3e-1", "--set", "width=16", "--set", "batch_size=4"]
QUICK_CHECK += ["--no-progress", "--checks", "no_divergence"]


def _blocked(tmp_path):
    """A folder that cannot be created, whoever runs the test (root included): a file is in its way."""
    blocker = tmp_path / "a-file"
    blocker.write_text("the user's file\n")
    return blocker, blocker / "folder"


@pytest.mark.parametrize("flag", ["--regen-all", "--update-baseline"])
def test_a_baseline_rewrite_into_a_folder_that_cannot_be_made_fails_before_training(tmp_path, capsys, flag):
    blocker, folder = _blocked(tmp_path)
    assert main([*QUICK_CHECK, "--baselines", str(folder), flag]) == 2
    err = capsys.readouterr().err
    assert "rewrites baselines, but the baseline folder" in err and "cannot be created" in err
    assert "--trainstab-" not in err and err.count("\n") == 1
    assert blocker.read_text() == "the user's file\n"


def test_a_baseline_folder_that_is_a_file_is_refused(tmp_path, capsys):
    blocker, _ = _blocked(tmp_path)
    assert main([*QUICK_CHECK, "--baselines", str(blocker)]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
    assert blocker.read_text() == "the user's file\n"


@pytest.mark.parametrize("where", ["the file itself", "below the file"])
def test_a_report_folder_that_cannot_be_written_fails_before_training(tmp_path, capsys, where):
    blocker, below = _blocked(tmp_path)
    assert main([*QUICK_CHECK, "--report", str(blocker if where == "the file itself" else below)]) == 2
    err = capsys.readouterr().err
    assert "--report" in err and ("is a file" in err or "cannot be created" in err)
    assert blocker.read_text() == "the user's file\n"


def test_a_full_disk_at_the_end_is_not_reported_as_success(tmp_path, capsys, monkeypatch):
    import trainstab.core.files

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainstab.core.files, "write_atomically", full_disk)
    assert main([*QUICK_CHECK, "--baselines", str(tmp_path / "baselines"), "--regen-all"]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "could NOT write" in out and "No space left on device" in out
    assert "but 1 file(s) could not be written" in out and "wrote " not in out


def test_pytest_refuses_a_report_folder_it_cannot_write_before_training(pytester):
    blocker = pytester.path / "report"
    blocker.write_text("the user's file\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--trainstab-report", str(blocker))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--trainstab-report * is a file; give a folder*"])
    assert blocker.read_text() == "the user's file\n"


@pytest.mark.parametrize(
    ("value", "status", "message"),
    [
        ("m:b[x", pytest.ExitCode.USAGE_ERROR, "one pair of brackets"),  # unreadable: refused at start
        ("reference[qk_layernorm=false]", pytest.ExitCode.TESTS_FAILED, "the reference takes no [[]options]"),
    ],
)
def test_a_bad_model_in_the_ini_is_one_line_not_a_traceback(pytester, value, status, message):
    pytester.makeini(f"[pytest]\ntrainstab_model = {value}\n")
    pytester.makepyfile(
        "from trainstab.testing import parametrize_with_checks\n\n\n"
        "@parametrize_with_checks(checks=['no_divergence'])\n"
        "def test_it(model, check):\n    check(model)\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert result.ret == status
    (result.stderr if status == pytest.ExitCode.USAGE_ERROR else result.stdout).fnmatch_lines([f"*{message}*"])


def test_the_plugin_is_inert_when_the_project_cannot_hold_pytests_cache(pytester):
    # A read-only checkout, as root sees one too: the cache folder cannot be made (a file is in its way).
    pytester.makepyfile("def test_nothing():\n    pass\n")
    (pytester.path / ".pytest_cache").write_text("not a folder\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stderr.str()


SWEEP = ["sweep", "--steps", "8", "--lrs", "1e-2", "--set", "width=16", "--set", "batch_size=4", "--no-progress"]
FORECAST = ["forecast", "--steps", "8", "--no-progress"]
FUZZ = ["fuzz", "--budget", "2", "--no-progress"]

#: (argv, words the one-line error must hold): every case exits 2 before any training, and writes nothing.
CLI_CASES = {
    "lrs inf": ([*SWEEP, "--lrs", "inf"], "learning rate inf is outside [1.2e-38, 3.4e+38]"),
    "lrs nan": ([*SWEEP, "--lrs", "nan"], "a learning rate is nan"),
    "lrs empty": ([*SWEEP, "--lrs", ""], "--lrs is empty; give a value (comma-separated numbers"),
    "lrs comma": ([*SWEEP, "--lrs", ","], "--lrs=',': expected comma-separated numbers"),
    "lrs 1e400": ([*SWEEP, "--lrs", "1e400"], "learning rate inf is outside"),
    "lrs 1e-50": ([*SWEEP, "--lrs", "1e-50"], "learning rate 1e-50 is outside"),
    "lrs negative": ([*SWEEP, "--lrs", "-0.1"], "learning rate -0.1 must be > 0"),
    "seed huge": ([*SWEEP, "--seed", "99999999999999999999999"], "expected an integer from 0 to 2**63-1"),
    "seed negative": ([*SWEEP, "--seed", "-1"], "expected an integer from 0 to 2**63-1"),
    "steps 1e9": ([*SWEEP, "--steps", "1000000000"], "expected a whole number of steps from 1 to 1000000"),
    "steps 0": ([*SWEEP, "--steps", "0"], "expected a whole number of steps from 1 to 1000000"),
    "width 1e6": ([*SWEEP, "--set", "width=1000000", "--set", "heads=1"], "this sweep would need about"),
    "batch 1e8": ([*SWEEP, "--set", "batch_size=100000000"], "this sweep would need about"),
    "init_scale nan": ([*SWEEP, "--set", "init_scale=nan"], "init_scale=nan in the model config is not a finite"),
    "eps nan": ([*SWEEP, "--set", "eps=nan"], "eps=nan in the train config is not a finite number"),
    "z_loss nan": ([*SWEEP, "--set", "z_loss=nan"], "z_loss=nan in the train config is not a finite number"),
    "eps inf": ([*SWEEP, "--set", "eps=inf"], "eps=inf in the train config is not a finite number"),
    "workers 0": ([*SWEEP, "--workers", "0"], "expected a whole number above 0"),
    "model brackets": ([*SWEEP, "--model", "m:b[x"], "options go in one pair of brackets"),
    "reference options": ([*SWEEP, "--model", "reference[qk_layernorm=false]"], "the reference takes no [options]"),
    "factory exits": ([*SWEEP, "--model", "bad_models:exits"], "raised SystemExit: 3"),
    "forward exits": ([*SWEEP, "--model", "bad_models:exits_in_forward"], "SystemExit: 4"),
    "integer logits": ([*SWEEP, "--model", "bad_models:integer_logits"], "logits of dtype torch.int64"),
    "meta device": ([*SWEEP, "--model", "bad_models:on_meta"], "returned parameters on meta"),
    "no grad": ([*SWEEP, "--model", "bad_models:no_grad"], "returned logits without a gradient"),
    "nan logits": ([*SWEEP, "--model", "bad_models:nan_logits"], "non-finite logits at initialisation"),
    "syntax error": ([*SWEEP, "--model", "broken_syntax:build"], "raised SyntaxError"),
    "raises at import": ([*SWEEP, "--model", "raises_at_import:build"], "raised RuntimeError: no GPU here"),
    "check max-lr -1": ([*QUICK_CHECK, "--max-lr", "-1"], "--max-lr='-1': expected a finite number above 0"),
    "check max-lr nan": ([*QUICK_CHECK, "--max-lr", "nan"], "--max-lr='nan': expected a finite number above 0"),
    "check bound nan": ([*QUICK_CHECK, "--attention-logit-bound", "nan"], "expected a finite number above 0"),
    "check bound -5": ([*QUICK_CHECK, "--attention-logit-bound", "-5"], "expected a finite number above 0"),
    "check log-z 0": ([*QUICK_CHECK, "--log-z-bound", "0"], "expected a finite number above 0"),
    "check spikes -1": ([*QUICK_CHECK, "--spike-score-bound", "-1"], "expected a finite number, 0 or above"),
    "check grad nan": ([*QUICK_CHECK, "--grad-rms-over-eps", "nan"], "expected a finite number, 0 or above"),
    "check lrs empty": ([*QUICK_CHECK, "--lrs", ""], "--lrs is empty; give a value"),
    "check ignore empty": ([*QUICK_CHECK, "--ignore-params", ""], "--ignore-params is empty; give a value"),
    "check seed huge": ([*QUICK_CHECK, "--seed", "1e30"], "expected an integer from 0 to 2**63-1"),
    "forecast target nan": ([*FORECAST, "--target-params", "nan"], "'nan': expected a finite number above 0"),
    "forecast max-lr -1": ([*FORECAST, "--max-lr", "-1"], "'-1': expected a finite number above 0"),
    "forecast cap 0": ([*FORECAST, "--max-extrapolation", "0"], "expected a number of decades above 0"),
    "forecast cap 1000": ([*FORECAST, "--max-extrapolation", "1000"], "expected a number of decades above 0"),
    "fuzz budget 0": ([*FUZZ, "--budget", "0"], "'0': expected a whole number above 0"),
    "fuzz max-lr nan": ([*FUZZ, "--max-lr", "nan"], "'nan': expected a finite number above 0"),
    "unknown option": (["sweep", "--nope"], "(see trainstab sweep --help)"),
    "unknown command": (["nope"], "(see trainstab --help)"),
}


@pytest.fixture
def user_repo(tmp_path, monkeypatch):
    """A working folder with the user's files and two broken model modules on the path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("the user's notes\n")
    (tmp_path / "broken_syntax.py").write_text("def build(size)\n    return None\n")
    (tmp_path / "raises_at_import.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _listing(folder):
    return sorted((p.relative_to(folder), p.read_bytes()) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(("argv", "words"), list(CLI_CASES.values()), ids=list(CLI_CASES))
def test_bad_input_is_one_line_and_exit_2_before_training_and_no_file_changes(user_repo, capsys, argv, words):
    before = _listing(user_repo)
    status = _run(argv)
    captured = capsys.readouterr()
    assert status == 2, captured
    assert words in captured.err, captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert _listing(user_repo) == before


def _run(argv):
    """``trainstab argv`` in this process: its exit status, whether returned or raised by argparse."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def test_help_names_the_flags_value_not_an_internal_key(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    assert "--max-lr MAX_LR" in out and "TRAINSTAB_" not in out


def test_fuzz_names_the_plot_flag_when_the_plot_path_is_a_folder(user_repo, capsys):
    assert main([*FUZZ, "--plot", str(user_repo)]) == 2
    assert "--plot " in capsys.readouterr().err


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    import trainstab.cli.main

    def interrupted(args, console):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainstab.cli.main, "run_sweep_command", interrupted)
    assert main(SWEEP) == 130
    err = capsys.readouterr().err
    assert err == "trainstab: interrupted (Ctrl-C); nothing more was written\n"


def test_a_deeply_nested_baseline_is_an_error_naming_the_file_not_a_crash(tmp_path):
    from trainstab.gate.baseline import BaselineError, read_baseline

    path = tmp_path / "attention_logits.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BaselineError, match="nested too deeply"):
        read_baseline(path, "attention_logits")
    assert path.read_text().startswith("[[[")


def test_a_model_that_changes_torchs_global_state_does_not_change_it_for_what_runs_next():
    import torch

    from trainstab.core.config import ModelConfig
    from trainstab.train.models import check_model

    before = (torch.get_default_dtype(), torch.get_num_threads(), torch.is_grad_enabled())
    check_model("bad_models:changes_global_state", ModelConfig(width=16, heads=2, depth=1, context_length=16), 0)
    assert (torch.get_default_dtype(), torch.get_num_threads(), torch.is_grad_enabled()) == before


@pytest.mark.parametrize(
    ("ini", "words"),
    [
        ("trainstab_max_lr = nan", "trainstab_max_lr='nan': expected a finite number above 0"),
        ("trainstab_seed = -1", "trainstab_seed='-1': expected an integer from 0 to 2**63-1"),
        ("trainstab_attention_logit_bound = -5", "expected a finite number above 0"),
        ("trainstab_max_extrapolation = 0", "expected a number of decades above 0"),
        ("trainstab_steps = 0", "expected a whole number of steps"),
    ],
)
def test_a_bad_ini_value_is_a_usage_error_naming_the_key(pytester, ini, words):
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert words in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_every_earlier_file_is_kept_in_numbered_generations_with_its_mode(tmp_path):
    from trainstab.core.files import write_atomically

    path = tmp_path / "map.json"
    path.write_text("the user's original\n")
    path.chmod(0o644)
    for text in ("first run\n", "second run\n", "third run\n"):
        write_atomically(path, text)
    assert path.read_text() == "third run\n" and path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "map.json.previous").read_text() == "the user's original\n"
    assert (tmp_path / "map.json.previous.2").read_text() == "first run\n"
    assert (tmp_path / "map.json.previous.3").read_text() == "second run\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    from trainstab.core import files

    path = tmp_path / "report.json"
    path.write_text("the user's report\n")

    def full_disk(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    for keep in (False, True):
        with pytest.raises(OSError, match="No space left"):
            files.write_atomically(path, "new\n", keep=keep)
        assert [p.name for p in tmp_path.iterdir()] == ["report.json"] and path.read_text() == "the user's report\n"


def test_a_report_of_a_stopped_run_says_it_is_incomplete(tmp_path):
    from trainstab.gate.report import render_html

    row = {"model": "m", "check": "no_divergence", "verdict": "pass", "value": 0.0, "bound": 0.0, "message": "ok",
           "baseline": {"status": "off", "message": ""}, "order": 0}  # fmt: skip
    assert "INCOMPLETE" in render_html({"checks": [row], "complete": False}, {})
    assert "INCOMPLETE" not in render_html({"checks": [row], "complete": True}, {})


def test_pytest_refuses_a_baseline_rewrite_it_cannot_write_before_training(pytester):
    blocker = pytester.path / "a-file"
    blocker.write_text("the user's file\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--trainstab-baselines", str(blocker / "baselines"), "--trainstab-regen-all"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--trainstab-regen-all rewrites baselines, but the baseline folder" in result.stderr.str()
    assert blocker.read_text() == "the user's file\n"


def test_training_a_model_that_changes_global_state_leaves_the_process_as_it_was():
    import torch

    from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig
    from trainstab.train.sweep import run_sweep

    before = (torch.get_default_dtype(), torch.get_num_threads(), torch.is_grad_enabled())
    config = SweepConfig(
        model_name="bad_models:changes_global_state",
        model=ModelConfig(width=16, heads=2, depth=1, context_length=16),
        train=TrainConfig(steps=3, batch_size=2, probe_every=3),
        lrs=(0.01,),
        workers=1,
    )
    run_sweep(config)
    assert (torch.get_default_dtype(), torch.get_num_threads(), torch.is_grad_enabled()) == before


def test_two_sessions_at_once_in_one_project_each_train_and_agree(pytester):
    """Two developers (or two CI jobs) running the suite in one checkout: separate private caches, same numbers."""
    import subprocess
    import sys

    from user_project import USER_MODELS, USER_TEST

    pytester.makepyfile(mymodels=USER_MODELS, test_stability=USER_TEST)
    command = [sys.executable, "-m", "pytest", "--trainstab-steps=20", "--trainstab-lrs=1e-2"]
    env = {**os.environ, "PYTHONPATH": str(pytester.path)}
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    runs = [subprocess.Popen(command, cwd=pytester.path, env=env, **output) for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    rows = [sorted(line for line in out.splitlines() if line.startswith("mymodels:")) for out in outputs]
    assert rows[0] == rows[1] and len(rows[0]) == 4
    assert not list((pytester.path / ".pytest_cache" / "d" / "trainstab").glob("trainstab-session-*"))  # cleaned up


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        ("--trainstab-lrs=", "--trainstab-lrs is empty; give a value"),
        ("--trainstab-max-lr=-1", "--trainstab-max-lr='-1': expected a finite number above 0"),
        ("--trainstab-model=m:b[x", "options go in one pair of brackets"),
        ("--trainstab-ignore-params=", "--trainstab-ignore-params is empty"),
    ],
)
def test_a_bad_pytest_flag_is_a_usage_error_naming_it(pytester, flag, words):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", flag)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert words in result.stderr.str() and "Traceback" not in result.stderr.str()


def test_a_write_that_fails_after_training_is_one_line_and_exit_1(monkeypatch, capsys):
    import trainstab.cli.main

    def full_disk(args, console):
        raise OSError(errno.ENOSPC, "No space left on device", "findings/summary.md")

    monkeypatch.setattr(trainstab.cli.main, "run_reproduce_command", full_disk)
    assert main(["reproduce", "--quick", "--no-progress"]) == 1
    assert capsys.readouterr().err == "trainstab: could NOT write findings/summary.md: No space left on device\n"
