"""``trainstab init`` in a fresh git repository, end to end: init, the first run writes the baselines and asks for
them to be committed, the committed project passes, and a change that removes qk-norm fails with the report.

The project has none of this repository's conftest; its model is a user's, with its own qk-norm switch.
"""

import json
import os
import subprocess
import sys

import pytest

from trainstab.cli.main import main
from user_project import USER_MODELS

# The long tier (`pytest -m long`, after the README's command in .ci/run):
# four pytest runs of a user's project, each training.
pytestmark = pytest.mark.long

USER_FACTORY = (
    USER_MODELS
    + """

def build(size):
    return Tiny(size, qk_norm=True)
"""
)


def git(folder, *args):
    command = ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, check=True).stdout


def run_pytest(folder, *args):
    """A plain ``pytest`` started in the user's repository, as its developer would (none of our conftest)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_") or "COUNT" in key}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_init_then_baselines_then_a_change_that_removes_qk_norm_fails_with_the_report(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "mymodel").mkdir()
    (root / "mymodel" / "__init__.py").write_text("")
    (root / "mymodel" / "model.py").write_text(USER_FACTORY)
    (root / "pyproject.toml").write_text('[project]\nname = "mymodel"\nversion = "0"\n')
    assert main(["init", "--model", "mymodel.model:build", "--folder", str(root)]) == 0

    first = run_pytest(root)
    assert first.returncode == 1, first.stdout[-2000:]
    assert "no baseline yet for mymodel.model:build / attention_logits: wrote " in first.stdout
    written = sorted(path.name for path in (root / "stability" / "baselines" / "mymodel.model_build").iterdir())
    assert "attention_logits.json" in written and len(written) == 7
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "stability gate")

    committed = run_pytest(root)
    assert committed.returncode == 0 and "7 passed" in committed.stdout, committed.stdout[-2000:]

    model = root / "mymodel" / "model.py"
    model.write_text(USER_FACTORY.replace("return Tiny(size, qk_norm=True)", "return Tiny(size, qk_norm=False)"))
    changed = run_pytest(root, "--trainstab-report", "trainstab-report")
    assert changed.returncode == 1 and "FAILED stability/test_stability.py::" in changed.stdout
    report = json.loads((root / "trainstab-report" / "trainstab-report.json").read_text())
    failed = {row["check"] for row in report["checks"] if row["verdict"] == "FAIL"}
    assert "attention_logits" in failed and report["passed"] is False
    # What the runs left is ignored by the lines init added: git sees the model change alone.
    assert git(root, "status", "--porcelain").splitlines() == [" M mymodel/model.py"]
