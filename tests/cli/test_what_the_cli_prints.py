"""What the CLI writes where, whatever the terminal and the labels: issue 27's output cases.

Each ran wrong on the landed main before: ``PYTHONIOENCODING=ascii`` raised UnicodeEncodeError after
training, ``--json -`` wrote a file named ``-``, and a 300-character model option made every check
say "wrote ..." and then "could NOT write ... File name too long".
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from trainstab.gate.baseline import LONGEST_FILE_NAME, file_name

TESTS = Path(__file__).parents[1]
QUICK = ["sweep", "--steps", "8", "--lrs", "1e-2,3e-1", "--set", "width=16", "--set", "batch_size=4", "--no-progress"]


def _cli(*args: str, cwd: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **environment}
    command = [sys.executable, "-m", "trainstab", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env, check=False)


def test_an_ascii_terminal_gets_ascii_stand_ins_instead_of_a_unicode_error(tmp_path):
    done = _cli(*QUICK, cwd=tmp_path, PYTHONIOENCODING="ascii")
    assert done.returncode == 0, done.stderr
    assert "LR sensitivity" in done.stdout and " | best LR " in done.stdout  # "·" written as "|"
    assert "UnicodeEncodeError" not in done.stderr


def test_json_dash_writes_the_json_alone_on_standard_output_and_no_file(tmp_path):
    done = _cli(*QUICK, "--json", "-", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # nothing else on stdout: it pipes into jq as it is
    assert [run["lr"] for run in data["runs"]] == [0.01, 0.3]
    assert "LR sensitivity" in done.stderr  # the table went to stderr
    assert list(tmp_path.iterdir()) == []


#: A model that talks: print() when imported, when built and in every forward pass (in the worker processes that
#: train it), and a write straight to file descriptor 1, as a C library's printf would.
TALKATIVE = """
import os

from user_models import stable

print("importing the talkative model")


def talkative(size):
    print("building", size.width)
    model = stable(size)
    forward = model.forward

    def talking_forward(idx):
        print("forward", tuple(idx.shape), flush=True)
        os.write(1, b"a C library writes to fd 1\\n")
        return forward(idx)

    model.forward = talking_forward
    return model
"""


def test_json_dash_stays_parseable_when_the_model_prints_in_this_process_and_in_the_workers(tmp_path):
    (tmp_path / "talkative_models.py").write_text(TALKATIVE)
    model, path = ["--model", "talkative_models:talkative"], f"{tmp_path}{os.pathsep}{TESTS}"
    done = _cli(*QUICK, *model, "--workers", "2", "--json", "-", cwd=tmp_path, PYTHONPATH=path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # the model's output did not land before, inside or after the JSON
    assert [run["lr"] for run in data["runs"]] == [0.01, 0.3]
    for said in ("importing the talkative model", "building 16", "forward (", "a C library writes to fd 1"):
        assert said in done.stderr  # nothing the model said is lost: it went to stderr


def test_json_dash_in_process_puts_the_standard_output_back_as_it_found_it(tmp_path, monkeypatch, capfd):
    # main() also runs inside other processes (tests, pytester): fd 1 and sys.stdout are theirs again afterwards.
    from trainstab.cli.main import main

    (tmp_path / "talkative_models.py").write_text(TALKATIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    stdout, fd_1 = sys.stdout, os.fstat(1)
    assert main([*QUICK, "--model", "talkative_models:talkative", "--workers", "1", "--json", "-"]) == 0
    assert sys.stdout is stdout and os.path.samestat(os.fstat(1), fd_1)
    out, err = capfd.readouterr()
    assert json.loads(out)["runs"] and "building 16" in err and "a C library writes to fd 1" in err
    print("after the run")
    assert capfd.readouterr().out == "after the run\n"


def test_a_label_too_long_for_a_file_name_gets_a_short_folder_that_the_next_run_reads(tmp_path):
    model = f"user_models:with_note[note={'x' * 300}]"
    check = ["check", "--model", model, "--checks", "no_divergence", "--steps", "5", "--lrs", "1e-2"]
    first = _cli(*check, "--baselines", "bl", "--no-progress", cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # a new baseline fails until it is reviewed and committed
    assert "(new baseline, commit this file)" in first.stdout and "could NOT write" not in first.stdout
    (folder,) = (tmp_path / "bl").iterdir()
    assert len(folder.name) == LONGEST_FILE_NAME and folder.name == file_name(f"{model}")
    assert json.loads((folder / "no_divergence.json").read_text())["model"] == model  # the whole label, inside
    second = _cli(*check, "--baselines", "bl", "--no-progress", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "new baseline" not in second.stdout and len(list((tmp_path / "bl").iterdir())) == 1


def test_two_long_labels_that_share_their_first_characters_get_two_folders():
    common = "user_models:with_note[note=" + "x" * 300
    assert file_name(common + "a]") != file_name(common + "b]")
    assert file_name("reference") == "reference"  # a name that fits is unchanged: old baselines stay found
    assert file_name("r" * LONGEST_FILE_NAME) == "r" * LONGEST_FILE_NAME
