"""Bad input and failing writes: one clear line, the right exit code, no user file changed, never false success.

Each case runs the front end a user runs (``trainstab`` in-process through ``main``, pytest through
pytester) and asserts the exit code and the one line that names what was wrong and how to fix it.
"""

import errno

import pytest

from trainstab.cli import EXIT_FAILED, main

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
    import trainstab.files

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainstab.files, "write_atomically", full_disk)
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
