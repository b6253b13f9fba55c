"""``trainstab reproduce``: files, summary structure, never overwriting, clear errors."""

import json

import pytest

from trainstab.cli.main import main
from trainstab.core.errors import TrainstabError
from trainstab.paper.reproduce import reproduce


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


@pytest.mark.filterwarnings("ignore:No artists with labels")  # the stand-in finding draws nothing
def test_on_a_users_model_the_findings_run_on_it_and_the_reference_only_ones_are_listed(tmp_path, monkeypatch):
    import dataclasses

    import trainstab.paper.reproduce as module
    from trainstab.paper.findings import FINDINGS, FindingResult

    trained = []

    def tiny_finding(lab, plan):  # stands in for a training-key finding: one 5-step run of the lab's model
        config = lab.config("batch_size=4")
        sweep = lab.run(dataclasses.replace(config, lrs=(0.01,), train=dataclasses.replace(config.train, steps=5)))
        trained.append(sweep.config.model_name)
        return FindingResult("warmup", "Warm-up", "claim", None, "measured")

    monkeypatch.setattr(module, "FINDINGS", {"qk_layernorm": FINDINGS["qk_layernorm"], "warmup": tiny_finding})
    result = reproduce(tmp_path, quick=True, model="user_models:stable")
    assert trained == ["user_models:stable"]
    assert [key for key, _ in result.skipped] == ["qk_layernorm"]
    summary = (tmp_path / "summary.md").read_text()
    assert "model user_models:stable" in summary
    assert "- qk_layernorm: compares the reference's qk_layernorm switch on and off" in summary
    assert json.loads((tmp_path / "findings.json").read_text())["model"] == "user_models:stable"


def test_naming_a_reference_only_finding_for_a_users_model_is_an_error(tmp_path, capsys):
    argv = ["reproduce", "--out", str(tmp_path), "--model", "user_models:stable", "--only", "mup", "--no-progress"]
    assert main(argv) == 2
    assert "finding mup compares the reference's parameterization switch" in capsys.readouterr().err


def test_a_broken_model_fails_before_the_output_folder_is_touched(tmp_path):
    with pytest.raises(TrainstabError, match="returned logits of shape"):
        reproduce(tmp_path / "out", quick=True, model="user_models:wrong_vocab")
    assert not (tmp_path / "out").exists()
