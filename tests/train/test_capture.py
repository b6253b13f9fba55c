import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainstab import TrainstabError, capture_attention, is_capturing, record_attention_logits
from trainstab.core.config import ModelConfig
from trainstab.train.reference import ReferenceTransformer

TIGHT = 1e-5  # fp32 agreement of two computations of the same logits


def _qkv(b=2, h=3, t=5, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, t, d, generator=g) * 3 for _ in range(3)]


def test_capture_does_not_change_the_attention_output():
    q, k, v = _qkv()
    plain = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with capture_attention() as records:
        captured = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(plain, captured)
    assert len(records) == 1


def test_capture_does_not_change_the_reference_models_logits():
    model = ReferenceTransformer(ModelConfig(qk_layernorm=False), members=2)
    idx = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(1))
    plain = model(idx)
    with capture_attention() as records:
        captured = model(idx)
    assert torch.equal(plain, captured)
    assert len(records) == ModelConfig().depth  # one record per layer


def test_causal_max_logit_ignores_masked_positions():
    q, k, _ = _qkv()
    z = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, T, T)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    expected = z.abs().masked_fill(~causal, 0).amax(dim=(-2, -1))
    with capture_attention() as records:
        F.scaled_dot_product_attention(q, k, q, is_causal=True)
    assert torch.allclose(records[0].max_abs_logit, expected.reshape(-1, 3), rtol=TIGHT)
    assert records[0].max_abs_logit.shape == (2, 3)


def test_boolean_and_additive_masks_and_custom_scale_are_respected():
    q, k, v = _qkv()
    mask = torch.rand(5, 5, generator=torch.Generator().manual_seed(2)) > 0.3
    mask[:, 0] = True  # every query may attend somewhere
    z = (q @ k.transpose(-2, -1)) * 0.1
    expected = z.abs().masked_fill(~mask, 0).amax(dim=(-2, -1)).reshape(-1, 3)
    additive = torch.zeros(5, 5).masked_fill(~mask, float("-inf"))
    with capture_attention() as records:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.1)
        F.scaled_dot_product_attention(q, k, v, attn_mask=additive, scale=0.1)
    for record in records:
        assert torch.allclose(record.max_abs_logit, expected, rtol=TIGHT)
    assert torch.allclose(records[0].entropy, records[1].entropy, rtol=TIGHT)


def test_uniform_attention_has_the_entropy_of_a_uniform_distribution():
    q = torch.zeros(1, 1, 4, 2)
    with capture_attention() as records:
        F.scaled_dot_product_attention(q, q, q, is_causal=True)
    # Query i sees i + 1 keys uniformly: mean entropy = mean(log(1..4)).
    expected = sum(math.log(n) for n in range(1, 5)) / 4
    assert records[0].entropy.item() == pytest.approx(expected, rel=TIGHT)


def test_grouped_query_attention_shares_key_heads():
    q = _qkv(h=4)[0]
    k, v = _qkv(h=2, seed=3)[:2]
    with capture_attention() as records:
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert records[0].max_abs_logit.shape == (2, 4)


def test_the_hook_records_hand_written_attention_only_inside_a_capture():
    logits = torch.tensor([[[[1.0, 50.0], [-7.0, 2.0]]]])  # (1, 1, 2, 2); 50 is above the diagonal
    record_attention_logits(logits)  # outside a capture: nothing happens
    assert not is_capturing()
    with capture_attention() as records:
        assert is_capturing()
        record_attention_logits(logits)
    assert records[0].max_abs_logit.item() == 7.0  # the masked 50 does not count
    assert not is_capturing()


def test_captures_do_not_nest():
    with capture_attention(), pytest.raises(RuntimeError, match="already active"), capture_attention():
        pass


# --- what is not attention, and what is attention once ---------------------------------------

B, T, DIM = 2, 5, 8


class _NotAttention(nn.Module):
    """Softmaxes and products that are not attention: none may be recorded."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.classifier = nn.Linear(DIM, 10)
        self.router = nn.Linear(DIM, 4)
        self.gate = nn.Parameter(torch.randn(DIM, 4, generator=g))
        self.batched = nn.Parameter(torch.randn(1, DIM, 4, generator=g))

    def forward(self, x, case):
        if case == "classifier-head":
            return F.softmax(self.classifier(x), dim=-1)
        if case == "moe-router-linear":
            return self.router(x).softmax(-1).topk(2, dim=-1).values
        if case == "moe-router-einsum":
            return torch.einsum("btd,de->bte", x, self.gate).softmax(-1)
        if case == "batched-weight":
            return torch.softmax(x @ self.batched, dim=-1)
        if case == "loss":
            return F.cross_entropy(self.classifier(x).flatten(0, 1), torch.zeros(B * T, dtype=torch.long))
        if case == "mask-only":
            mask = torch.zeros(T, T).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), -math.inf)
            return mask.softmax(-1)
        raise ValueError(case)


@pytest.mark.parametrize(
    "case", ["classifier-head", "moe-router-linear", "moe-router-einsum", "batched-weight", "loss", "mask-only"]
)
def test_a_softmax_that_is_not_attention_is_not_recorded(case):
    x = torch.randn(B, T, DIM, generator=torch.Generator().manual_seed(1), requires_grad=True)
    with capture_attention() as records:
        _NotAttention()(x, case)
    assert records == []


def _scores(seed=0):
    q, k = (torch.randn(B, 2, T, DIM, generator=torch.Generator().manual_seed(seed + s)) for s in (0, 1))
    return q, k, (q @ k.transpose(-2, -1)) / math.sqrt(DIM)


def test_a_mask_built_from_the_data_by_a_product_is_not_an_attention_of_its_own():
    q, k, _ = _scores()
    valid = torch.ones(B, T)
    valid[1, -2:] = 0  # padding
    with capture_attention() as records:
        pairs = valid[:, :, None] @ valid[:, None, :]  # (B, T, T): a product of data, but a mask
        z = (q @ k.transpose(-2, -1)) / math.sqrt(DIM)
        z.masked_fill(pairs[:, None] == 0, -math.inf).softmax(-1)
    assert len(records) == 1
    z = (q @ k.transpose(-2, -1)) / math.sqrt(DIM)
    expected = z.abs().masked_fill(pairs[:, None] == 0, 0).amax((-2, -1))
    assert torch.allclose(records[0].max_abs_logit, expected, rtol=TIGHT)


@pytest.mark.parametrize("order", ["hook-then-softmax", "softmax-then-hook", "softmax-twice"])
def test_an_attention_seen_twice_is_recorded_once(order):
    q, k, _ = _scores()
    with capture_attention() as records:
        z = (q @ k.transpose(-2, -1)) / math.sqrt(DIM)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        if order == "hook-then-softmax":
            record_attention_logits(z)
        z.masked_fill(~causal, -math.inf).softmax(-1)
        if order == "softmax-then-hook":
            record_attention_logits(z)
        if order == "softmax-twice":
            z.masked_fill(~causal, -math.inf).softmax(-1)
    assert len(records) == 1


def test_token_ids_made_inside_the_capture_are_data_not_constants():
    torch.manual_seed(0)
    embedding = nn.Embedding(16, DIM)
    with capture_attention() as records:
        x = embedding(torch.zeros(B, T, dtype=torch.long))  # ids from a factory, inside the block
        (x @ x.transpose(-2, -1)).softmax(-1)
    assert len(records) == 1


def test_an_op_the_tracer_cannot_follow_ends_the_lineage_and_leaves_the_model_alone(monkeypatch):
    from trainstab.train.attention_trace import _Scores

    def cannot_follow(*args, **kwargs):
        raise RuntimeError("an op with arguments the tracer does not expect")

    monkeypatch.setattr(_Scores, "reshaped", cannot_follow)
    q, k, _ = _scores()

    def attention():
        dots = torch.einsum("bhid,bhjd->bhij", q, k)  # einsum reshapes its product: the lineage must follow a view
        return dots.softmax(-1)

    plain = attention()
    with capture_attention() as records:
        captured = attention()
    assert torch.equal(plain, captured)
    assert records == []  # not followed, so not recorded (and the model's run is untouched)


# --- in-place ops, inference mode, masks and weights that are easy to get wrong ---------------

CAUSAL = torch.ones(T, T, dtype=torch.bool).tril()
SCALE = 1 / math.sqrt(DIM)


def _expected_causal(q, k, scale=SCALE, allowed=CAUSAL):
    z = (q.detach().double() @ k.detach().double().transpose(-2, -1)) * scale
    return z.masked_fill(~allowed, 0).abs().amax((-2, -1)).float()


def _in_place(q, k, spelling):
    s = q @ k.transpose(-2, -1)
    if spelling == "div_-masked_fill_":
        s.div_(math.sqrt(DIM))
        s.masked_fill_(~CAUSAL, -math.inf)
    elif spelling == "imul-iadd":
        s *= 1 / math.sqrt(DIM)
        s += torch.zeros(T, T).masked_fill(~CAUSAL, -math.inf)
    elif spelling == "stable-softmax":  # a -1e4 mask, a positive position bias, then the row max subtracted
        s = s / math.sqrt(DIM) + (1.0 - CAUSAL.float()) * -10000.0 + torch.rand(2, T, T) * 2
        s = s - s.amax(-1, keepdim=True)
    return s.softmax(-1)


@pytest.mark.parametrize("spelling", ["div_-masked_fill_", "imul-iadd", "stable-softmax"])
@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference_mode"])
def test_in_place_scores_and_inference_mode_are_captured_exactly(spelling, mode):
    q, k, _ = _scores()
    q.requires_grad_()
    context = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[mode]
    with context(), capture_attention() as records:
        _in_place(q, k, spelling)
    assert len(records) == 1
    assert torch.allclose(records[0].max_abs_logit, _expected_causal(q, k), rtol=TIGHT)


def test_sdpa_and_multihead_attention_are_captured_under_inference_mode():
    q, k, _ = _scores()
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(2 * DIM, 2, batch_first=True)
    with torch.inference_mode(), capture_attention() as records:
        F.scaled_dot_product_attention(q, k, k, is_causal=True)
        mha(torch.randn(B, T, 2 * DIM), torch.randn(B, T, 2 * DIM), torch.randn(B, T, 2 * DIM))
    assert len(records) == 2
    assert torch.allclose(records[0].max_abs_logit, _expected_causal(q, k), rtol=TIGHT)


def test_baddbmm_with_beta_zero_ignores_its_input_as_pytorch_does():
    q, k, _ = _scores()
    garbage = torch.full((B * 2, T, T), math.nan)
    with capture_attention() as records:
        torch.baddbmm(garbage, q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2), beta=0.0).softmax(-1)
    expected = _expected_causal(q, k, 1.0, torch.ones(T, T, dtype=torch.bool)).reshape(B * 2, 1)
    assert torch.allclose(records[0].max_abs_logit, expected, rtol=TIGHT)


def test_learned_queries_inside_multihead_attention_are_attention():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(2 * DIM, 2, batch_first=True)
    latents = nn.Parameter(torch.randn(1, 3, 2 * DIM))  # Perceiver-style queries: parameters alone
    with capture_attention() as records:
        mha(latents.expand(B, -1, -1), torch.randn(B, T, 2 * DIM), torch.randn(B, T, 2 * DIM))
    assert len(records) == 1


def test_a_classifier_whose_weight_is_a_buffer_is_not_attention():
    class Prototypes(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("prototypes", torch.randn(1, 10, DIM))

        def forward(self, h):
            return (h @ self.prototypes.transpose(-2, -1)).softmax(-1)

    with capture_attention() as records:
        Prototypes()(torch.randn(B, T, DIM))
    assert records == []


def test_a_write_through_a_view_of_the_scores_is_never_recorded_as_if_it_had_not_happened():
    q, k, _ = _scores()
    with capture_attention() as records:
        s = (q @ k.transpose(-2, -1)) / math.sqrt(DIM)
        s[..., :2] = -math.inf  # an untracked write into the scores
        s.softmax(-1)
    # Missing it is allowed (it is an op the tracer does not follow); a value counting the written keys is not.
    allowed = torch.ones(T, T, dtype=torch.bool)
    allowed[:, :2] = False
    assert records == [] or torch.allclose(records[0].max_abs_logit, _expected_causal(q, k, allowed=allowed))


def test_scores_broadcast_to_more_heads_by_a_bias_are_followed():
    q, k, _ = _scores()
    bias = torch.zeros(1, 3, T, T)
    with capture_attention() as records:
        s = (q[:, 0] @ k[:, 0].transpose(-2, -1)) / math.sqrt(DIM)  # (B, T, T)
        (s[:, None] + bias).softmax(-1)  # (B, 3, T, T)
    expected = _expected_causal(q[:, :1], k[:, :1], allowed=torch.ones(T, T, dtype=torch.bool)).expand(B, 3)
    assert torch.allclose(records[0].max_abs_logit, expected, rtol=TIGHT)


def test_flex_attention_under_capture_is_recorded_in_its_scope_and_another_higher_order_operator_errors():
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    from trainstab.train.flex_emulation import flex_attention_on_cpu

    q, k, _ = _scores()
    with flex_attention_on_cpu(None), capture_attention() as records:
        flex.flex_attention(q, k, k)  # (B, H, T, D) each: recorded by flex_emulation, as in every sweep
    assert len(records) == 1
    # Not flex outside the scope: under the tracer its compiled eager path would fail, and leave torch.compile's
    # caches unable to run flex again in this process.
    with pytest.raises(TrainstabError, match="record_attention_logits"), capture_attention():
        torch.cond(q.sum() > 0, lambda t: t * 2, lambda t: t * 3, (q,))
