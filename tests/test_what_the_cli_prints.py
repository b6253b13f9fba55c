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

from trainstab.baseline import LONGEST_FILE_NAME, file_name

TESTS = Path(__file__).parent
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
