"""benchmarks/output_logit_search.py: finished points are cached and resumed, the budget is honoured, and the
summary keeps the runs of every length.

The search itself runs for hours (its results are committed in benchmarks/output_logit_search/); here each
point trains 120 steps.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainstab.train.corpus import bundled_corpus_path

# The long tier (`pytest -m long`, run by .ci/run after the README's command): the script trains its points.
pytestmark = pytest.mark.long

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "output_logit_search.py"
NONE, Z_LOSS = "w32-bundled-v512-sp-none", "w32-bundled-v512-sp-z_loss"


def _search(out: Path, *args: str) -> str:
    command = [sys.executable, str(SCRIPT), "--out", str(out), *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_points_are_cached_a_rerun_resumes_and_the_summary_keeps_every_length(tmp_path):
    first = _search(tmp_path, "--steps", "120", "--only", f"{NONE},{Z_LOSS}")
    assert f"{NONE}: " in first and f"{Z_LOSS}: " in first
    points = tmp_path / "points"
    cached = {path.name: path.stat().st_mtime_ns for path in points.glob("*.json")}
    assert set(cached) == {f"{NONE}-120.json", f"{Z_LOSS}-120.json"}
    data = json.loads((points / f"{NONE}-120.json").read_text())
    assert data["lrs"] == [0.03, 0.1, 0.3, 1.0] and data["point"]["control"] == "none"
    assert [row["step"] for row in data["curves"][0]] == [0, 100, 119]  # logged every 100 steps and at the end
    assert set(data["curves"][0][0]) >= {"loss", "log_z_mean", "log_z_min", "logit_max", "unembedding_norm"}
    assert (tmp_path / f"{NONE}-120.png").stat().st_size > 0  # one figure per uncontrolled point and length

    again = _search(tmp_path, "--steps", "120", "--only", f"{NONE},{Z_LOSS}")
    assert f"{NONE}: " not in again  # resumed: nothing trained again, nothing rewritten
    assert {path.name: path.stat().st_mtime_ns for path in points.glob("*.json")} == cached

    _search(tmp_path, "--steps", "110", "--only", NONE)
    runs = json.loads((tmp_path / "summary.json").read_text())["runs"]
    assert {key.rsplit(" ", 1)[0] for key in runs} == {f"{NONE}-120", f"{Z_LOSS}-120", f"{NONE}-110"}
    assert runs[f"{NONE}-110 lr=1"]["steps"] == 110


def test_a_spent_budget_trains_nothing_and_says_what_is_left(tmp_path):
    out = _search(tmp_path, "--steps", "120", "--only", NONE, "--budget-minutes", "0")
    assert f"budget reached: {NONE} and the rest left for the next run" in out
    assert not list((tmp_path / "points").glob("*.json"))


def test_make_corpus_writes_a_larger_vocabulary_and_its_default_is_the_committed_corpus(tmp_path):
    make = ROOT / "fixtures" / "make_corpus.py"
    for args, name in ((["--vocab", "4096", "--tokens", "200000"], "large.npy"), ([], "default.npy")):
        command = [sys.executable, str(make), *args, "--out", str(tmp_path / name)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
    large = np.load(tmp_path / "large.npy")
    assert large.size == 200_000 and large.max() < 4096 and np.unique(large).size > 2048
    assert (tmp_path / "default.npy").read_bytes() == bundled_corpus_path().read_bytes()
