import torch
import torch.nn.functional as F

from trainstab.train.losses import cross_entropy_with_log_z

FP32_AGREEMENT = 1e-5  # fused fp32 kernel against autograd in fp32


def _inputs(n=64, v=37, scale=4.0):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, v, generator=g) * scale, torch.randint(0, v, (n,), generator=g)


def test_values_match_cross_entropy_and_logsumexp():
    logits, targets = _inputs()
    ce, log_z = cross_entropy_with_log_z(logits, targets)
    assert torch.allclose(ce, F.cross_entropy(logits, targets, reduction="none"), atol=FP32_AGREEMENT)
    assert torch.allclose(log_z, torch.logsumexp(logits, -1), atol=FP32_AGREEMENT)


def test_gradient_with_z_loss_matches_autograd():
    logits, targets = _inputs()
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    ce, log_z = cross_entropy_with_log_z(a, targets)
    (ce.mean() + 1e-2 * log_z.square().mean()).backward()
    reference = F.cross_entropy(b, targets) + 1e-2 * torch.logsumexp(b, -1).square().mean()
    reference.backward()
    assert torch.allclose(a.grad, b.grad, atol=FP32_AGREEMENT)


def test_gradient_of_either_output_alone_matches_autograd():
    logits, targets = _inputs()
    for pick in (0, 1):
        a = logits.clone().requires_grad_()
        b = logits.clone().requires_grad_()
        cross_entropy_with_log_z(a, targets)[pick].sum().backward()
        ref = F.cross_entropy(b, targets, reduction="none") if pick == 0 else torch.logsumexp(b, -1)
        ref.sum().backward()
        assert torch.allclose(a.grad, b.grad, atol=FP32_AGREEMENT)


def test_very_negative_log_probabilities_give_finite_gradients():
    logits, targets = _inputs(scale=300.0)
    logits = logits.requires_grad_()
    ce, _ = cross_entropy_with_log_z(logits, targets)
    ce.mean().backward()
    assert torch.isfinite(logits.grad).all()
