"""``trainstab init`` (trainstab.cli.init): what it writes is the README's, and it never changes what a user wrote.

The whole path in a fresh git repository (init, the first run, commit, a change that fails) is
tests/end_to_end/test_init_in_a_user_repo.py.
"""

import subprocess
import sys

import pytest

from trainstab.cli.init import GATE_SCRIPT, GATE_SCRIPT_PATH, TEST_FILE, TEST_PATH, WORKFLOW, WORKFLOW_PATH
from trainstab.cli.main import main
from user_project import readme_block

MODEL = "mymodel.model:build"


def init(folder, *args):
    return main(["init", "--model", MODEL, "--folder", str(folder), *args])


def test_what_init_writes_is_what_the_readme_shows(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mymodel"\n')
    assert init(tmp_path) == 0
    test_file = readme_block("# stability/test_stability.py\n")
    assert (tmp_path / TEST_PATH).read_text() == test_file.split("\n", 1)[1] == TEST_FILE.format(model=MODEL)
    table = readme_block("# pyproject.toml\n[tool.pytest.ini_options]\n", "toml").split("\n", 1)[1]
    assert (tmp_path / "pyproject.toml").read_text() == '[project]\nname = "mymodel"\n\n' + table
    script = readme_block("#!/usr/bin/env bash\n# ci/stability-gate.sh", "bash")
    assert (tmp_path / GATE_SCRIPT_PATH).read_text() == script
    assert (tmp_path / GATE_SCRIPT_PATH).stat().st_mode & 0o111  # executable
    assert (tmp_path / WORKFLOW_PATH).read_text() == readme_block("# .github/workflows/stability.yml", "yaml")
    assert (tmp_path / WORKFLOW_PATH).read_text() == WORKFLOW and script == GATE_SCRIPT
    ignored = (tmp_path / ".gitignore").read_text().splitlines()
    assert ignored == ["*.obtained.json", "trainstab-report/", ".gate-venv/", ".hypothesis/"]


def test_a_second_init_changes_nothing_and_says_so(tmp_path, capsys):
    assert init(tmp_path) == 0
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    capsys.readouterr()
    assert init(tmp_path) == 0
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before
    said = capsys.readouterr().out
    assert said.count("unchanged") == 5 and "created" not in said and "added" not in said


def test_a_users_differing_file_is_shown_as_a_diff_and_kept_unless_forced(tmp_path, capsys):
    mine = tmp_path / TEST_PATH
    mine.parent.mkdir()
    mine.write_text("def test_mine():\n    pass\n")
    assert init(tmp_path) == 1
    out = capsys.readouterr().out
    assert f"kept your {TEST_PATH}: it differs from trainstab's (--force writes trainstab's)" in out
    assert f"--- {TEST_PATH} (yours)" in out and "-def test_mine():" in out
    assert mine.read_text() == "def test_mine():\n    pass\n"  # untouched
    assert (tmp_path / GATE_SCRIPT_PATH).exists()  # the rest is written
    assert init(tmp_path, "--force") == 0
    assert mine.read_text() == TEST_FILE.format(model=MODEL)
    assert (tmp_path / f"{TEST_PATH}.previous").read_text() == "def test_mine():\n    pass\n"


def test_an_existing_pytest_table_gains_only_the_keys_it_lacks(tmp_path, capsys):
    text = '[project]\nname = "x"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\naddopts = "-ra"\n'
    (tmp_path / "pyproject.toml").write_text(text)
    assert init(tmp_path) == 0
    out = capsys.readouterr().out
    assert "added pythonpath, trainstab_baselines, trainstab_profile to [tool.pytest.ini_options]" in out
    assert "kept yours: testpaths = ['tests']" in out
    new = (tmp_path / "pyproject.toml").read_text()
    assert new.startswith('[project]\nname = "x"\n\n[tool.pytest.ini_options]\npythonpath = ["."]')
    assert new.endswith('testpaths = ["tests"]\naddopts = "-ra"\n')
    assert not (tmp_path / "pyproject.toml.previous").exists()  # an addition leaves nothing behind


def test_a_pytest_ini_gains_its_keys_and_another_file_gets_them_shown(tmp_path, capsys):
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")
    assert init(tmp_path) == 0
    assert (tmp_path / "pytest.ini").read_text() == (
        "[pytest]\npythonpath = .\ntestpaths = stability\ntrainstab_baselines = stability/baselines\n"
        "trainstab_profile = quick\naddopts = -ra\n"
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "tox.ini").write_text("[tox]\nenvlist = py311\n\n[pytest]\naddopts = -ra\n")
    capsys.readouterr()
    assert init(other) == 1  # tox.ini: shown for the user to add, not edited
    assert "add these keys to the pytest configuration in" in capsys.readouterr().out
    assert (other / "tox.ini").read_text() == "[tox]\nenvlist = py311\n\n[pytest]\naddopts = -ra\n"


def test_without_a_factory_or_with_a_bad_one_it_is_one_line_and_exit_2(tmp_path):
    def run(*args):
        command = [sys.executable, "-m", "trainstab", "init", "--folder", str(tmp_path), *args]
        return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)

    for args, words in (
        ((), "trainstab init needs your model factory: --model package.module:callable"),
        (("--model", "reference"), "give your own factory as package.module:callable"),
    ):
        result = run(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and words in result.stderr
    (tmp_path / "pyproject.toml").write_text("[project\n")
    result = run("--model", MODEL)
    assert result.returncode == 2 and result.stderr.startswith("trainstab: error: the pytest configuration: ")
    assert list(tmp_path.iterdir()) == [tmp_path / "pyproject.toml"]  # nothing written


@pytest.mark.parametrize("name", [TEST_PATH, ".gitignore"])
def test_nothing_is_written_when_a_step_cannot_be_planned(tmp_path, name):
    (tmp_path / "pyproject.toml").write_text("not toml [")
    assert init(tmp_path) == 2
    assert not (tmp_path / name).exists()


def test_a_configuration_in_a_folder_above_is_left_alone(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")  # the monorepo's, one folder up
    repo = tmp_path / "repo"
    repo.mkdir()
    assert init(repo) == 0
    assert (tmp_path / "pytest.ini").read_text() == "[pytest]\naddopts = -ra\n"
    assert (repo / "pytest.ini").read_text().startswith("[pytest]\npythonpath = .\n")


def test_a_users_files_keep_their_bytes_line_endings_and_links(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_bytes(b'[project]\r\nname = "x"\r\n')
    real = tmp_path / "shared.gitignore"
    real.write_bytes(b"caf\xe9.txt\r\n")  # Latin-1, CRLF
    (tmp_path / ".gitignore").symlink_to(real)
    assert init(tmp_path) == 0
    ignored = real.read_bytes()  # written through the link, Latin-1 and CRLF kept
    assert ignored.startswith(b"caf\xe9.txt\r\n*.obtained.json\r\n") and b"\n" not in ignored.replace(b"\r\n", b"")
    assert (tmp_path / ".gitignore").is_symlink()
    pyproject = (tmp_path / "pyproject.toml").read_bytes()
    assert pyproject.startswith(b'[project]\r\nname = "x"\r\n\r\n[tool.pytest.ini_options]\r\n')
    assert b"\n" not in pyproject.replace(b"\r\n", b"")
    capsys.readouterr()
    assert init(tmp_path) == 0  # and a second run finds everything there, in either line ending
    assert capsys.readouterr().out.count("unchanged") == 5


def test_force_names_where_the_replaced_file_went_and_a_second_ini_init_keeps_nothing_of_its_own(tmp_path, capsys):
    (tmp_path / "pytest.ini").write_text("[pytest]  # ours\naddopts = -ra\n")
    mine = tmp_path / TEST_PATH
    mine.parent.mkdir()
    mine.write_text("# one\n")
    (tmp_path / f"{TEST_PATH}.previous").write_text("# an older one\n")
    assert init(tmp_path, "--force") == 0
    out = capsys.readouterr().out
    assert f"wrote {TEST_PATH} (yours is kept as " in out and f"{TEST_PATH}.previous.2)" in out
    assert (tmp_path / f"{TEST_PATH}.previous.2").read_text() == "# one\n"
    assert "added pythonpath" in out  # under a header with a comment
    assert init(tmp_path) == 0
    assert "kept yours" not in capsys.readouterr().out


def test_what_is_in_the_way_is_refused_before_anything_is_written(tmp_path, capsys):
    (tmp_path / "stability").write_text("a file where the folder goes")
    assert init(tmp_path) == 2
    assert "is a file where trainstab init writes the folder stability/" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stability"]
    assert main(["init", "--model", "hf:llama", "--folder", str(tmp_path)]) == 2
