"""The optimizer table (trainstab.core.optimizer_table): an optimizer a newer torch brings is refused in one line on
an older one, before anything trains."""

import pytest

from trainstab.cli.main import main
from trainstab.core import optimizer_table
from trainstab.core.config import SweepConfig, TrainConfig, validate
from trainstab.core.errors import TrainstabError


@pytest.mark.parametrize("version", ["2.8.1", "2.5.0+cpu"])
def test_muon_on_a_torch_without_it_is_one_line_naming_the_version(monkeypatch, version):
    monkeypatch.setattr(optimizer_table, "installed_torch", lambda: version)
    with pytest.raises(TrainstabError) as refused:
        validate(SweepConfig(train=TrainConfig(optimizer="muon")))
    assert str(refused.value) == (
        f"optimizer 'muon' needs torch >= 2.9, and this environment has torch {version}: upgrade torch "
        "(pip install 'torch>=2.9'), or choose one of adamw, adafactor, lion, sgd"
    )
    validate(SweepConfig(train=TrainConfig(optimizer="adamw")))  # the others run on it


@pytest.mark.parametrize("version", ["2.9.0", "2.13.0+cpu", "3.0.0"])
def test_muon_on_a_torch_that_has_it_is_accepted(monkeypatch, version):
    monkeypatch.setattr(optimizer_table, "installed_torch", lambda: version)
    validate(SweepConfig(train=TrainConfig(optimizer="muon")))


def test_the_cli_refuses_it_with_exit_2_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(optimizer_table, "installed_torch", lambda: "2.8.0")
    assert main(["sweep", "--optimizer", "muon", "--steps", "5", "--lrs", "1e-2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs torch >= 2.9" in err and "torch 2.8.0" in err
