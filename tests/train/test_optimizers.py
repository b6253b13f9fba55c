"""Optimizers beyond AdamW: each member stepped by its own optimizer, the sweep's schedule, clipping and decay kept."""

import dataclasses
from pathlib import Path

import pytest
import torch

from trainstab.checks.battery import Thresholds
from trainstab.core.config import ModelConfig, SweepConfig
from trainstab.core.errors import TrainstabError
from trainstab.gate.baseline import Baseline, new_baseline, protocol_changes
from trainstab.run.overrides import apply_overrides
from trainstab.train.models import build_stack
from trainstab.train.optimizers import Lion, MemberOptimizers
from trainstab.train.sweep import run_sweep

SMALL = ModelConfig(width=16, heads=2, depth=2, context_length=16)
TINY = SweepConfig(model=SMALL, lrs=(1e-2, 1e-1), workers=1)
TINY = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=12, probe_every=4))


def make_sgd(param_groups, peak_lr):
    """A user's optimizer factory, as the option names it: ``test_optimizers:make_sgd``."""
    return torch.optim.SGD(param_groups, lr=peak_lr, momentum=0.5)


def test_lion_steps_by_the_sign_of_the_interpolated_momentum():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = Lion([p], lr=0.1, betas=(0.9, 0.99))
    p.grad = torch.tensor([0.5, -0.1, 0.0])
    optimizer.step()
    assert torch.allclose(p.detach(), torch.tensor([0.9, -1.9, 3.0]))  # sign(0.1 * g), zero stays
    assert torch.allclose(optimizer.state[p]["exp_avg"], 0.01 * torch.tensor([0.5, -0.1, 0.0]))


@pytest.mark.parametrize("optimizer", ["muon", "adafactor", "lion", "sgd", "test_optimizers:make_sgd"])
def test_every_optimizer_trains_each_member_alone_and_the_same_twice(optimizer):
    config = apply_overrides(TINY, [f"optimizer={optimizer}"])
    both = run_sweep(config)
    # Members never mix: the first member trains bit for bit the same beside another LR (same stack size,
    # so the same arithmetic; a smaller stack rounds its batched calls differently).
    beside_another = run_sweep(dataclasses.replace(config, lrs=(1e-2, 3e-1)))
    assert both.runs[0].losses == beside_another.runs[0].losses
    assert run_sweep(config).runs == both.runs  # deterministic
    assert both.runs[0].losses[-1] < both.runs[0].losses[0]  # it learns


def test_a_sweep_on_two_workers_gives_the_numbers_of_one():
    config = apply_overrides(dataclasses.replace(TINY, lrs=(1e-2, 3e-2, 1e-1, 3e-1, 1.0)), ["optimizer=muon"])
    assert run_sweep(dataclasses.replace(config, workers=2)).runs == run_sweep(config).runs  # stacks, not workers


def test_the_optimizer_changes_the_numbers():
    adamw, muon = run_sweep(TINY), run_sweep(apply_overrides(TINY, ["optimizer=muon"]))
    assert adamw.runs[0].losses[-1] != muon.runs[0].losses[-1]


def test_muon_trains_the_hidden_matrices_and_adamw_the_embeddings_gains_and_biases():
    model, multipliers = build_stack("reference", SMALL, members=2, seed=0)
    params = dict(model.named_parameters())
    train = dataclasses.replace(TINY.train, optimizer="muon")
    member = MemberOptimizers(params, multipliers, train, SMALL.vocab_size, torch.tensor([1e-2, 1e-1]))
    muon, adamw = member.optimizers[0]
    proxies = member.proxies[0]
    on_muon = {name for name, p in proxies.items() if any(p is q for g in muon.param_groups for q in g["params"])}
    assert on_muon == {name for name in proxies if name.endswith(("qkv", "attn_out", "mlp_in", "mlp_out"))}
    assert isinstance(adamw, torch.optim.AdamW) and "embedding" not in on_muon and "unembedding" not in on_muon


def test_an_unknown_optimizer_or_a_broken_factory_is_a_clear_error():
    with pytest.raises(TrainstabError, match="optimizer 'adam' is unknown; use one of adamw, muon"):
        run_sweep(apply_overrides(TINY, ["optimizer=adam"]))
    with pytest.raises(TrainstabError, match="cannot import it"):
        run_sweep(apply_overrides(TINY, ["optimizer=no_such_module:factory"]))


def test_the_optimizer_is_part_of_the_baselines_protocol_and_an_old_baseline_was_adamw():
    adamw = run_sweep(dataclasses.replace(TINY, lrs=(1e-2,)))
    muon = run_sweep(apply_overrides(dataclasses.replace(TINY, lrs=(1e-2,)), ["optimizer=muon"]))
    recorded = new_baseline("reference", "log_z", adamw, Thresholds())
    changes = protocol_changes(
        Baseline(Path("b.json"), recorded), new_baseline("reference", "log_z", muon, Thresholds())
    )
    assert changes == ['train.optimizer: baseline "adamw", this run "muon"']
    del recorded["protocol"]["train.optimizer"]  # written before the key existed: measured with AdamW
    older = Baseline(Path("b.json"), recorded)
    assert protocol_changes(older, new_baseline("reference", "log_z", adamw, Thresholds())) == []


def test_the_checks_advise_for_the_optimizer():
    from trainstab.checks.battery import run_check

    muon = run_sweep(apply_overrides(TINY, ["optimizer=muon", "qk_layernorm=false"]))
    attention = run_check("attention_logits", muon, Thresholds(attention_logit=1.0))  # a bound it must fail
    assert "consider qk-layernorm or QK-clip (--trainstab-set qk_clip=100), which bounds them under Muon" in (
        attention.message
    )
    lion = run_sweep(apply_overrides(TINY, ["optimizer=lion"]))
    gradients = run_check("grad_rms_vs_eps", lion, Thresholds(grad_rms_over_eps=1e30))  # a bound it must fail
    assert "lion has no epsilon" in gradients.message and "eps=1e-15" not in gradients.message


def test_a_tensor_without_a_gradient_is_neither_stepped_nor_decayed():
    model, multipliers = build_stack("reference", SMALL, members=2, seed=0)
    params = dict(model.named_parameters())
    train = dataclasses.replace(TINY.train, optimizer="sgd", weight_decay_mode="coupled")
    optimizers = MemberOptimizers(params, multipliers, train, 0, torch.tensor([1e-2, 1e-1]))
    for name, p in params.items():
        p.grad = None if name == "embedding" else torch.ones_like(p)
    frozen = params["embedding"].detach().clone()
    optimizers.step(0, torch.tensor([1e-2, 1e-1]), optimizers.gradient_norm())
    assert torch.equal(params["embedding"].detach(), frozen)
