"""The persistent sweep cache: an unchanged model is read back; any change to it, or to the recipe, misses."""

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from trainstab.cache.sweep_cache import cache_key, cached
from trainstab.core.config import ModelConfig, SweepConfig
from trainstab.run.overrides import apply_overrides
from trainstab.train.sweep import run_sweep

pytest_plugins = ["pytester"]

SMALL = ModelConfig(width=16, heads=2, depth=2, context_length=16)
TINY = SweepConfig(model=SMALL, lrs=(1e-2,), workers=1)
TINY = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=8, probe_every=4))
USER = dataclasses.replace(TINY, model_name="user_models:stable")


def test_the_key_of_an_unchanged_model_is_the_same_every_time():
    assert cache_key(TINY) == cache_key(TINY)
    assert cache_key(USER) == cache_key(USER)


@pytest.mark.parametrize(
    "change",
    [
        ["norm_placement=post"],  # a norm moved
        ["init_scale=2.0"],  # another init
        ["z_loss=0"],  # another loss
        ["qk_layernorm=false"],
    ],
)
def test_a_changed_reference_misses(change):
    assert cache_key(apply_overrides(TINY, change)) != cache_key(TINY)


def test_a_changed_user_model_misses_under_the_same_name(monkeypatch):
    import user_models

    before = cache_key(USER)
    original = user_models.Tiny.__init__

    def scaled_init(self, size, qk_norm=True):  # the same factory name, another init
        original(self, size, qk_norm)
        with torch.no_grad():
            self.head.weight.mul_(2.0)

    monkeypatch.setattr(user_models.Tiny, "__init__", scaled_init)
    assert cache_key(USER) != before


def test_a_detached_branch_misses_under_the_same_name(monkeypatch):
    import torch.nn.functional as F

    import user_models

    before = cache_key(USER)

    def detached_mlp(self, idx):  # Tiny's forward with its MLP branch cut off from the gradient
        b, t = idx.shape
        x = self.emb(idx) + self.pos[:t]
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["ln1"](x)).view(b, t, 3, self.h, -1).unbind(2)
            q, k = F.layer_norm(q, q.shape[-1:]), F.layer_norm(k, k.shape[-1:])
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
            x = x + blk["o"](y.transpose(1, 2).reshape(b, t, -1))
            x = x + blk["pr"](F.gelu(blk["fc"](blk["ln2"](x)))).detach()
        return self.head(self.lnf(x))

    monkeypatch.setattr(user_models.Tiny, "forward", detached_mlp)
    assert cache_key(USER) != before


def test_a_rerun_reads_the_sweep_back_without_training(tmp_path):
    trained = []

    def train(config):
        trained.append(config)
        return run_sweep(config)

    first, hit_first = cached(tmp_path, USER, train)
    again, hit_again = cached(tmp_path, USER, train)
    assert (hit_first, hit_again, len(trained)) == (False, True, 1)
    assert again.runs == first.runs and again.lr_sensitivity == first.lr_sensitivity
    _, hit_other = cached(tmp_path, apply_overrides(USER, ["z_loss=0"]), train)
    assert (hit_other, len(trained)) == (False, 2)


def test_a_cache_file_that_cannot_be_read_is_trained_again(tmp_path):
    result, _ = cached(tmp_path, TINY, run_sweep)
    (path,) = tmp_path.glob("sweep-*.json")
    path.write_text("{ cut short")
    again, hit = cached(tmp_path, TINY, run_sweep)
    assert not hit and again.runs == result.runs and path.read_text().startswith("{")


TEST = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["reference"], checks=["no_divergence", "attention_logits"])
def test_stability(model, check):
    check(model)
"""


def test_a_second_pytest_run_reads_every_sweep_from_the_cache(pytester):
    pytester.makepyfile(test_stability=TEST)
    pytester.makeini("[pytest]\ntrainstab_cache = .trainstab-cache\ntrainstab_steps = 8\ntrainstab_lrs = 1e-2,1e-1\n")
    first = pytester.runpytest_subprocess()
    first.assert_outcomes(passed=2)
    first.stdout.fnmatch_lines(["*trainstab: cache *.trainstab-cache: 0 sweep(s) read, 1 trained and kept"])
    files = {path: path.stat().st_mtime_ns for path in (pytester.path / ".trainstab-cache").iterdir()}
    assert len(files) == 1
    second = pytester.runpytest_subprocess()
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(["*trainstab: cache *.trainstab-cache: 1 sweep(s) read, 0 trained and kept"])
    assert {path: path.stat().st_mtime_ns for path in (pytester.path / ".trainstab-cache").iterdir()} == files


def test_trainstab_check_reads_a_kept_sweep(tmp_path):
    command = [sys.executable, "-m", "trainstab", "check", "--no-progress", "--steps", "8", "--lrs", "1e-2"]
    command += ["--checks", "no_divergence", "--cache", str(tmp_path / "cache")]
    runs = [subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env={**os.environ}) for _ in "ab"]
    assert [run.returncode for run in runs] == [0, 0], runs[1].stderr
    assert "sweep trained and kept in the cache" in runs[0].stdout
    assert "sweep read from the cache" in runs[1].stdout


def test_a_users_optimizer_is_keyed_by_its_code(tmp_path, monkeypatch):
    module = tmp_path / "team_optimizers.py"
    module.write_text("import torch\n\ndef make(groups, lr):\n    return torch.optim.SGD(groups, lr=lr)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = apply_overrides(TINY, ["optimizer=team_optimizers:make"])
    before = cache_key(config)
    assert cache_key(config) == before
    module.write_text(
        "import torch\n\ndef make(groups, lr):\n    return torch.optim.SGD(groups, lr=lr, momentum=0.9)\n"
    )
    assert cache_key(config) != before


def test_a_teams_registered_optimizer_is_keyed_by_its_code(tmp_path, monkeypatch):
    from trainstab.core.optimizer_table import register_optimizer

    module = tmp_path / "registered_team_optimizers.py"
    module.write_text("import torch\n\ndef make(groups, lr):\n    return torch.optim.SGD(groups, lr=lr)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import registered_team_optimizers

    register_optimizer("registered_team_sgd", registered_team_optimizers.make)  # as a team's module does
    config = apply_overrides(TINY, ["optimizer=registered_team_sgd"])
    before = cache_key(config)
    module.write_text(
        "import torch\n\ndef make(groups, lr):\n    return torch.optim.SGD(groups, lr=lr, momentum=0.9)\n"
    )
    assert cache_key(config) != before  # its edit is a new sweep, not the stale one


def test_a_bad_corpus_is_a_clear_error_before_any_key_is_computed(tmp_path):
    from trainstab.core.errors import TrainstabError

    with pytest.raises(TrainstabError, match="does not exist"):
        cache_key(dataclasses.replace(TINY, corpus=str(tmp_path / "missing.npy")))
