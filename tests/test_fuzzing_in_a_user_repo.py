"""The README's fuzzing example, as written, in a user's repository with none of our conftest.

Hypothesis' own defaults fail training properties (a 200 ms deadline against
one-second examples); the plugin's shipped profiles (trainstab.hypothesis_profiles)
must make the example pass as written, off CI and on it, while a profile or
``@settings`` of the user's own still wins.
"""

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[1] / "README.md"

MODELS = '''
import torch.nn.functional as F
from torch import nn


class Tiny(nn.Module):
    """A pre-LN block with qk-layernorm, written the way a user writes one."""

    def __init__(self, size):
        super().__init__()
        d, self.heads = size.width, size.heads
        self.emb = nn.Embedding(size.vocab_size, d)
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, size.vocab_size, bias=False))

    def forward(self, idx):
        b, t = idx.shape
        x = self.emb(idx)
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, -1).unbind(2)
        q, k = F.layer_norm(q, q.shape[-1:]), F.layer_norm(k, k.shape[-1:])
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + y.transpose(1, 2).reshape(b, t, -1)
        return self.head(x + self.mlp(x))


def build(size):
    return Tiny(size)
'''


def _readme_block(first_line: str) -> str:
    """The README's fenced python block that starts with ``first_line``, as written."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)  # this repository's CI sets its own
    pytester.mkpydir("mypkg")
    (pytester.path / "mypkg" / "models.py").write_text(MODELS)
    pytester.makepyfile(test_fuzz=_readme_block("from hypothesis import example, given"))
    pytester.syspathinsert()
    return pytester


@pytest.mark.parametrize("ci", [None, "true"], ids=["dev", "ci"])
def test_the_readmes_fuzzing_example_passes_as_written_off_ci_and_on_it(project, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--hypothesis-show-statistics")
    result.assert_outcomes(passed=1)
    examples = "10" if ci else "5"  # trainstab-ci: 10 derandomized; trainstab-dev: 5
    assert re.search(rf"{examples} passing, 0 failing", result.stdout.str()), result.stdout


def test_a_users_own_settings_still_win_over_the_shipped_profile(project, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    project.makeconftest(
        "from hypothesis import settings\n"
        "settings.register_profile('mine', max_examples=2, deadline=None)\n"
        "settings.load_profile('mine')\n"
    )
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--hypothesis-show-statistics")
    result.assert_outcomes(passed=1)
    assert re.search(r"2 passing, 0 failing", result.stdout.str()), result.stdout
