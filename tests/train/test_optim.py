import itertools
import math

import pytest
import torch

from trainstab.core.config import TrainConfig
from trainstab.train.optim import StackedAdamW, schedule

MATCHES_TORCH = 1e-6  # same algorithm in fp32, different op order


def _torch_schedule(train: TrainConfig, peak: float):
    warmup = train.warmup_steps
    floor = min(train.lr_floor, peak)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / (train.steps - warmup)
        return (floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))) / peak

    return factor


@pytest.mark.parametrize("mode", ["independent", "coupled", "none"])
def test_one_member_steps_exactly_like_torch_adamw_with_clipping(mode):
    train = TrainConfig(steps=12, weight_decay_mode=mode, grad_clip=0.5)
    peak = 0.05
    g = torch.Generator().manual_seed(0)
    init = {"a": torch.randn(1, 3, 4, generator=g), "b": torch.randn(1, 5, generator=g)}
    grads = [{k: torch.randn_like(v) * 3 for k, v in init.items()} for _ in range(train.steps)]

    ours = {k: v.clone() for k, v in init.items()}
    opt = StackedAdamW(ours, {k: 1.0 for k in ours}, train)
    theirs = [torch.nn.Parameter(v[0].clone()) for v in init.values()]
    decay = {"independent": 1e-4 / peak, "coupled": 0.1, "none": 0.0}[mode]
    reference = torch.optim.AdamW(theirs, lr=peak, betas=(0.9, 0.95), eps=1e-8, weight_decay=decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(reference, _torch_schedule(train, peak))
    for step, grad in enumerate(grads):
        for name, p in ours.items():
            p.grad = grad[name].clone()
        opt.step(step, torch.tensor([peak]), opt.gradient_norm())
        for p, name in zip(theirs, init, strict=True):
            p.grad = grad[name][0].clone()
        torch.nn.utils.clip_grad_norm_(theirs, 0.5)
        reference.step()
        scheduler.step()
    for p, name in zip(theirs, init, strict=True):
        assert torch.allclose(ours[name][0], p.detach(), atol=MATCHES_TORCH)


def test_members_do_not_influence_each_other():
    train = TrainConfig(steps=5)
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, 6, generator=g)
    grads = [torch.randn(2, 6, generator=g) for _ in range(train.steps)]
    pair = {"w": base.repeat(2, 1)}
    alone = {"w": base.clone()}
    opt_pair = StackedAdamW(pair, {"w": 1.0}, train)
    opt_alone = StackedAdamW(alone, {"w": 1.0}, train)
    for step, grad in enumerate(grads):
        pair["w"].grad, alone["w"].grad = grad.clone(), grad[1:].clone()
        opt_pair.step(step, torch.tensor([1e-3, 0.3]), opt_pair.gradient_norm())
        opt_alone.step(step, torch.tensor([0.3]), opt_alone.gradient_norm())
    assert torch.equal(pair["w"][1], alone["w"][0])


def test_schedule_warms_up_linearly_then_decays_to_the_floor():
    train = TrainConfig(steps=100, warmup_fraction=0.1, lr_floor=1e-5)
    peak = torch.tensor([0.1])
    assert schedule(0, peak, train).item() == pytest.approx(0.01)
    assert schedule(9, peak, train).item() == pytest.approx(0.1)
    assert schedule(99, peak, train).item() == pytest.approx(1e-5, abs=1e-4)
    lrs = [schedule(s, peak, train).item() for s in range(10, 100)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_measurements_report_unscaled_update_rms():
    train = TrainConfig(steps=3, weight_decay_mode="none", grad_clip=0.0)
    params = {"w": torch.zeros(2, 1000)}
    params["w"].grad = torch.ones(2, 1000)
    opt = StackedAdamW(params, {"w": 1.0}, train)
    measured = opt.step(0, torch.tensor([1e-3, 1e-1]), opt.gradient_norm(), measure=True)
    # Adam's first step is sign(g): unit RMS whatever the LR.
    assert measured.update_rms.tolist() == pytest.approx([1.0, 1.0], rel=1e-4)
    assert measured.grad_rms.tolist() == pytest.approx([1.0, 1.0])
