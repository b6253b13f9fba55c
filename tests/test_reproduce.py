"""``trainstab reproduce``: files, summary structure, never overwriting, clear errors."""

import json

import pytest

from trainstab.cli import main
from trainstab.errors import TrainstabError
from trainstab.reproduce import reproduce


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("findings")
    reproduce(out, quick=True, only=("coordinates",))  # the one finding that trains in seconds
    return out


def test_it_writes_a_png_per_finding_a_summary_and_json(folder):
    assert sorted(p.name for p in folder.iterdir()) == ["coordinates.png", "findings.json", "summary.md"]
    assert (folder / "coordinates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_summary_has_the_verdict_table_claim_numbers_and_the_figure(folder):
    summary = (folder / "summary.md").read_text()
    assert "| finding | paper's direction | at proxy scale |" in summary
    assert "Coordinate check" in summary and "**held**" in summary
    assert "Measured: standard: activation RMS slope vs width" in summary
    assert "![Coordinate check (activation scale across widths)](coordinates.png)" in summary


def test_the_json_has_the_numbers_verdict_and_environment(folder):
    data = json.loads((folder / "findings.json").read_text())
    assert data["mode"] == "quick" and data["seed"] == 0
    assert data["findings"]["coordinates"]["held"] is True
    assert "torch" in data["environment"]


def test_a_rerun_keeps_the_previous_files(tmp_path):
    (tmp_path / "summary.md").write_text("my notes")
    reproduce(tmp_path, quick=True, only=("coordinates",))
    assert (tmp_path / "summary.md.previous").read_text() == "my notes"


def test_an_unknown_finding_is_an_error_that_lists_the_known_ones(tmp_path):
    with pytest.raises(TrainstabError, match=r"unknown finding.*nope.*known: qk_layernorm"):
        reproduce(tmp_path, only=("nope",))


def test_the_command_exits_2_on_an_unknown_finding(tmp_path, capsys):
    assert main(["reproduce", "--out", str(tmp_path), "--only", "nope", "--no-progress"]) == 2
    assert "unknown finding(s) nope" in capsys.readouterr().err


def test_an_unwritable_output_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TrainstabError, match="cannot write to the output folder"):
        reproduce(blocker / "sub", quick=True)


def test_forecast_refuses_fewer_than_three_widths(capsys):
    assert main(["forecast", "--widths", "32,48", "--no-progress"]) == 2
    assert "at least 3 distinct widths" in capsys.readouterr().err


def test_forecast_rejects_widths_that_are_not_integers(capsys):
    assert main(["forecast", "--widths", "32,x", "--no-progress"]) == 2
    assert "expected comma-separated integers" in capsys.readouterr().err
