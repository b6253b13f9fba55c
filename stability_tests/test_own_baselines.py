"""trainstab gates its own changes: the reference model against the baselines committed in fixtures/.

If a change to the engine, the reference model or the corpus moves the
reference's metrics beyond tolerance, this fails with the comparison, the
same way a user's pull request would. Refresh them (deliberately) with
``trainstab check --baselines fixtures/baselines --update-baseline`` and commit.
"""

from pathlib import Path

from trainstab.cli.main import main

BASELINES = Path(__file__).parent.parent / "fixtures" / "baselines"


def test_the_reference_model_holds_its_committed_baselines(capsys):
    status = main(["check", "--baselines", str(BASELINES), "--no-progress"])
    assert status == 0, capsys.readouterr().out
