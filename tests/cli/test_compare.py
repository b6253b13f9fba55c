"""``trainstab compare``: what it refuses before anything trains, in one line and exit status 2.

(The comparisons themselves, trained, are ``tests/end_to_end/test_gating_against_the_base.py``.)"""

import subprocess

import pytest

from trainstab.cli.main import EXIT_BAD_INPUT, build_parser, main

MODEL = "from torch import nn\n\n\ndef build(size):\n    return nn.Linear(size.width, size.width)\n"


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """A git repository with a model file committed on main, as the working folder."""
    (tmp_path / "comparemodels.py").write_text(MODEL)
    for args in (
        ("init", "-q", "-b", "main"),
        ("config", "user.email", "dev@example.com"),
        ("config", "user.name", "dev"),
        ("add", "."),
        ("commit", "-q", "-m", "base"),
    ):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_revision_that_does_not_exist_exits_2_naming_it(repository, capsys):
    status = main(["compare", "--model", "comparemodels:build", "--against", "nope", "--no-progress"])
    assert status == EXIT_BAD_INPUT
    error = capsys.readouterr().err.strip()
    assert error.startswith("trainstab: error: --against 'nope' is not a revision of the repository")


def test_a_built_in_model_has_nothing_to_compare_and_exits_2(repository, capsys):
    assert main(["compare", "--model", "reference", "--against", "main", "--no-progress"]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert (
        "reference is built into trainstab, the same code at both revisions, so there is nothing to compare with"
        in (error)
    )
    assert "name your own factory" in error


def test_outside_a_git_repository_it_exits_2_saying_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--model", "reference", "--no-progress"]) == EXIT_BAD_INPUT
    assert "is not in a git repository" in capsys.readouterr().err


def test_compare_defaults_to_the_merge_base_and_check_takes_against_alone_to_mean_it_too():
    parser = build_parser()
    assert parser.parse_args(["compare"]).against is None  # resolved to the merge base by the command
    assert parser.parse_args(["check", "--against"]).against == "merge-base"
    assert parser.parse_args(["check", "--against", "v1.2"]).against == "v1.2"
    assert parser.parse_args(["check", "--against-seeds", "5"]).against_seeds == "5"


def test_against_seeds_without_against_is_refused_rather_than_ignored(repository, capsys):
    assert main(["check", "--model", "comparemodels:build", "--against-seeds", "5"]) == EXIT_BAD_INPUT
    assert "--against-seeds sets how many seeds --against trains, and --against is not given" in capsys.readouterr().err
