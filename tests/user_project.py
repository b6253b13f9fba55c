"""What the tests that stand in a user's repository share: a user's model file and test file, and the code blocks of
the README and the documentation pages as written (``tests/end_to_end/`` runs them in pytester projects with none of
our conftest)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = README.parent / "docs"

# A user's model file: torch only, no trainstab import.
USER_MODELS = """
import torch.nn.functional as F
from torch import nn


class Tiny(nn.Module):
    def __init__(self, size, qk_norm):
        super().__init__()
        d, self.heads, self.qk_norm = size.width, size.heads, qk_norm
        self.emb = nn.Embedding(size.vocab_size, d)
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, size.vocab_size, bias=False))

    def forward(self, idx):
        b, t = idx.shape
        x = self.emb(idx)
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, -1).unbind(2)
        if self.qk_norm:
            q, k = F.layer_norm(q, q.shape[-1:]), F.layer_norm(k, k.shape[-1:])
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + y.transpose(1, 2).reshape(b, t, -1)
        return self.head(x + self.mlp(x))


def stable(size):
    return Tiny(size, qk_norm=True)


def unstable(size):
    return Tiny(size, qk_norm=False)
"""

# The new user's whole test file.
USER_TEST = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["mymodels:stable", "mymodels:unstable"], checks=["attention_logits", "no_divergence"])
def test_training_stability(model, check):
    check(model)
"""


def readme_block(first_line: str, language: str = "python") -> str:
    """The fenced block of ``language`` that starts with ``first_line``, as written in the README or a page of
    ``docs/``. A block shown on several pages must be the same everywhere (the README and the tutorial both show
    the test file): a page that drifted from another fails here."""
    texts = [README, *sorted(DOCS.rglob("*.md"))]
    blocks = [b for path in texts for b in re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)]
    found = {b for b in blocks if b.startswith(first_line)}
    assert len(found) == 1, f"{len(found)} different {language} blocks start with {first_line!r}"
    return found.pop()
