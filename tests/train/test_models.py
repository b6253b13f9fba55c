import dataclasses

import pytest
import torch

from trainstab import TrainstabError
from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig
from trainstab.train.models import ModelSize, build_stack, check_model
from trainstab.train.sweep import run_sweep

SMALL = ModelConfig(width=16, heads=2, depth=2, context_length=16)


def test_a_user_factory_is_stacked_with_identical_members_at_init():
    stack, multipliers = build_stack("user_models:stable", SMALL, members=3, seed=0)
    idx = torch.randint(0, 512, (2, 16))
    logits = stack(idx)
    assert logits.shape == (3, 2, 16, 512)
    assert torch.equal(logits[0], logits[2])
    assert set(multipliers.values()) == {1.0}


def test_gradients_reach_each_members_own_slice():
    stack, _ = build_stack("user_models:stable", SMALL, members=2, seed=0)
    idx = torch.randint(0, 512, (2, 16))
    stack(idx)[1].sum().backward()
    grads = [p.grad for p in stack.parameters() if p.grad is not None]
    assert grads and all(g[0].abs().sum() == 0 for g in grads)
    assert any(g[1].abs().sum() > 0 for g in grads)


def test_the_factory_is_seeded():
    a, _ = build_stack("user_models:stable", SMALL, members=1, seed=5)
    b, _ = build_stack("user_models:stable", SMALL, members=1, seed=5)
    c, _ = build_stack("user_models:stable", SMALL, members=1, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("user_models:no_attention", "trainstab.record_attention_logits"),
        ("user_models:raises", "raised ValueError: width must be a power of two"),
        ("user_models:wrong_vocab", "expected (B, T, V)"),
        ("user_models:returns_a_string", "not a torch.nn.Module"),
        (
            "user_models:short_context",
            "sequences of context_length=16 tokens, so the model must take sequences of that length",
        ),
        ("user_models:missing", "has no callable 'missing'"),
        ("no_such_package_xyz:build", "cannot import"),
        ("user_models", "package.module:callable"),
        ("hf:no_such_architecture", "no model type"),
    ],
)
def test_a_broken_model_gets_a_clear_error_not_a_pass(name, message):
    with pytest.raises(TrainstabError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        check_model(name, SMALL, seed=0)


def test_a_sweep_of_a_user_model_runs_and_is_deterministic():
    config = SweepConfig(
        model_name="user_models:unstable",
        model=SMALL,
        train=TrainConfig(steps=10, batch_size=4, probe_every=5),
        lrs=(1e-2, 1e-1),
        workers=1,
    )
    first, second = run_sweep(config), run_sweep(config)
    assert [r.losses for r in first.runs] == [r.losses for r in second.runs]
    assert all(r.max_attention_logit > 0 for r in first.runs)


def test_transformers_models_are_built_tiny_from_a_config_alone():
    pytest.importorskip("transformers")
    stack, _ = build_stack("hf:llama", SMALL, members=1, seed=0)
    template = stack.__dict__["template"]
    assert template.config.hidden_size == 16
    assert template.config.num_hidden_layers == 2
    assert template.config.head_dim == 8
    check_model("hf:gpt2", dataclasses.replace(SMALL, vocab_size=512), seed=0)


def test_model_size_reads_the_size_fields():
    assert ModelSize.of(SMALL) == ModelSize(16, 2, 2, 512, 16)
