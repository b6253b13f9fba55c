"""A model repository's first day, end to end: the README's sections copied as written into a user's project.

The project has none of this repository's conftest. Its model is a nanoGPT-style GPT written the way users
write one, with a keyword option (``build(size, qk_norm=True)``). Its files are the README's
``pyproject.toml``, battery test, variants test and both fuzzing examples, as written. The steps:

1. the first run (``-n 2``) records the baselines and fails asking to commit them;
2. the committed project passes under ``-n 0`` (``CI`` unset) and with pytest-xdist blocked
   (``-p no:xdist --strict-markers``, ``CI`` set), both runs with the same numbers;
3. ``trainstab check`` on the same project gives the same verdicts and numbers, and its messages are
   pytest's with its own flags.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trainstab.pytest_plugin.testing import STABILITY_FORECAST_NAMES
from user_project import readme_block

pytestmark = pytest.mark.long  # the long tier: `pytest -m long` (.ci/run runs it after the main command)

pytest_plugins = ["pytester"]

# mymodel/model.py: the user's GPT, with their own qk-norm switch.
USER_GPT = """
import math

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    def __init__(self, width, heads, qk_norm):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = self.q_norm(q.view(B, T, self.heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(k.view(B, T, self.heads, self.head_dim)).transpose(1, 2)
        v = v.view(B, T, self.heads, self.head_dim).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, width, heads, qk_norm):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, qk_norm)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, size, qk_norm):
        super().__init__()
        self.wte = nn.Embedding(size.vocab_size, size.width)
        self.wpe = nn.Embedding(size.context_length, size.width)
        self.h = nn.ModuleList(Block(size.width, size.heads, qk_norm) for _ in range(size.depth))
        self.ln_f = nn.LayerNorm(size.width)
        self.lm_head = nn.Linear(size.width, size.vocab_size, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def build(size, qk_norm=True):
    return GPT(size, qk_norm)
"""

# mypkg/models.py: the factory the README's first fuzzing example names.
MYPKG_MODELS = """
from mymodel.model import build as _build


def build(size):
    return _build(size)
"""

MODEL = "mymodel.model:build"
VARIANT = "mymodel.model:build[qk_norm=false]"
SUMMARY_LINE = re.compile(r"^(mymodel\.model:\S+)\s+(\w+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(pass|FAIL|warn|xfail)\s*$", re.M)


def readme_toml(first_line: str) -> str:
    """The fenced toml block that starts with ``first_line``, as the README or a documentation page writes it."""
    return readme_block(first_line, "toml")


@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)  # this repository's CI sets its own
    (pytester.path / "pyproject.toml").write_text(readme_toml("# pyproject.toml"))
    for package, source in (("mymodel", {"model": USER_GPT}), ("mypkg", {"models": MYPKG_MODELS})):
        pytester.mkpydir(package)
        for module, text in source.items():
            (pytester.path / package / f"{module}.py").write_text(text)
    stability = pytester.mkdir("stability")
    files = {
        "test_stability.py": readme_block("# stability/test_stability.py"),
        "test_variants.py": readme_block("# stability/test_variants.py"),
        "test_fuzz.py": readme_block("from hypothesis import example, given"),
        "test_fuzz_options.py": readme_block("from hypothesis import given\nfrom trainstab.fuzz"),
    }
    for name, text in files.items():
        (stability / name).write_text(text)
    return pytester


def _summary(text: str) -> dict[tuple[str, str], tuple[str, ...]]:
    """The trainstab summary's rows: (model, check) -> (value, bound, baseline, verdict)."""
    return {(m[1], m[2]): (m[3], m[4], m[5], m[6]) for m in SUMMARY_LINE.finditer(text)}


def test_a_users_project_copied_from_the_readme_passes_every_step(project, monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    first = project.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider")
    first.assert_outcomes(failed=7, passed=2, xfailed=1)
    wrote = f"*no baseline yet for {MODEL} / attention_logits: wrote *; review and commit this file*"
    first.stdout.fnmatch_lines([wrote])
    baselines = project.path / "stability" / "baselines"
    recipe = json.loads((baselines / "mymodel.model_build_qk_norm=false" / "attention_logits.json").read_text())
    assert recipe["recipe"]["model.options.qk_norm"] is False and "model.qk_layernorm" not in recipe["recipe"]

    runs = {  # with the first run, each condition once: -n 2 and -n 0, xdist present and blocked, CI unset and set
        "-n 0": (["-n", "0", "--trainstab-report", str(tmp_path / "report")], None),
        "no xdist, CI": (["-p", "no:xdist", "--strict-markers"], "true"),
    }
    summaries = {}
    for label, (args, ci) in runs.items():
        if ci is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", ci)
        result = project.runpytest_subprocess("-p", "no:cacheprovider", *args)
        result.assert_outcomes(passed=9, xfailed=1)
        if "-n" not in args:  # collected in this process (under xdist, the workers collect and the header cannot tell)
            result.stdout.re_match_lines([re.escape(f"trainstab: checking 2 model(s): {MODEL}, {VARIANT}")])
        summaries[label] = _summary(result.stdout.str())
    assert len(summaries["-n 0"]) == 8  # the model's 7 checks and the variant's xfailed one
    assert all(summary == summaries["-n 0"] for summary in summaries.values())  # same numbers everywhere
    numbers = {key: row[:2] for key, row in _summary(first.stdout.str()).items()}
    assert numbers == {key: row[:2] for key, row in summaries["-n 0"].items()}  # and under -n 2
    assert summaries["-n 0"][(MODEL, "attention_logits")][2:] == ("passed", "pass")
    assert summaries["-n 0"][(VARIANT, "attention_logits")][3] == "xfail"

    # The same project through trainstab check: the pyproject's keys, the same numbers, its own flags.
    monkeypatch.delenv("CI", raising=False)
    pytest_rows = {
        (row["model"], row["check"]): row
        for row in json.loads((tmp_path / "report" / "trainstab-report.json").read_text())["checks"]
    }
    for model, checks, status in ((MODEL, "all", 0), (VARIANT, "attention_logits", 1)):
        out = tmp_path / f"check-{status}"
        chosen = [] if checks == "all" else ["--checks", checks]  # pytest checks the variant's attention only
        checked = _trainstab(project.path, "check", "--model", model, *chosen, "--report", str(out))
        assert checked.returncode == status, checked.stdout + checked.stderr
        assert "configuration: pyproject.toml" in checked.stdout
        for row in json.loads((out / "trainstab-report.json").read_text())["checks"]:
            twin = pytest_rows[(model, row["check"])]
            assert (row["value"], row["bound"]) == (twin["value"], twin["bound"]), row["check"]
            assert row["message"] == twin["message"].replace("--trainstab-", "--"), row["check"]
            assert "--trainstab-" not in checked.stdout
    variant_message = pytest_rows[(VARIANT, "attention_logits")]["message"]
    assert "--trainstab-attention-logit-bound" in variant_message


def _trainstab(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``trainstab`` command run in the user's project folder."""
    env = {**os.environ, "PYTHONPATH": str(folder)}
    command = [sys.executable, "-m", "trainstab", *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_the_readmes_scaling_example_asks_for_the_stability_forecasts_alone(project):
    # Collected, not trained (the stability tier trains the scaling checks on zoo models): the README's block runs
    # as written in a user's project and asks for the three stability forecasts, none of the µP checks.
    (project.path / "stability" / "test_scaling.py").write_text(readme_block("# stability/test_scaling.py"))
    result = project.runpytest_subprocess("--collect-only", "-q", "-p", "no:cacheprovider", "stability/test_scaling.py")
    result.stdout.fnmatch_lines(
        [f"*test_scaling.py::test_stable_at_scale*{check}*" for check in STABILITY_FORECAST_NAMES]
        + ["3 tests collected*"]
    )
    assert "lr_transfer" not in result.stdout.str() and "coordinates" not in result.stdout.str()
