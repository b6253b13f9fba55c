"""flex_attention on the CPU (trainstab.train.flex_emulation): exact against flex's own forward, gradients equal to the
same function written with SDPA, recorded like every other attention, and nothing left changed after.

FORWARD_TOL: flex's CPU forward (no grad) and the emulation compute the same fp32 ops; measured differences are
0 to 2.4e-7 (the lse). GRAD_TOL: against SDPA's math the sums run in another order; measured up to 4.3e-6 on
gradients of size ~1 (relative to the largest gradient entry).
"""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

flex = pytest.importorskip("torch.nn.attention.flex_attention", reason="flex_attention needs torch >= 2.5")

from trainstab.core.errors import TrainstabError  # noqa: E402
from trainstab.train.capture import capture_attention  # noqa: E402
from trainstab.train.flex_emulation import dense_flex_attention, flex_attention_on_cpu  # noqa: E402

# flex's own eager forward, called here directly as the reference, gives its advice to compile it.
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

FORWARD_TOL = 1e-5
GRAD_TOL = 1e-5

B, H, L, E = 2, 4, 48, 16  # L not a multiple of the 128 block: a partial block at the end


def _qkv(heads_kv=H, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, L, E, generator=g)
    k = torch.randn(B, heads_kv, L, E, generator=g)
    v = torch.randn(B, heads_kv, L, E, generator=g)
    return q, k, v


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def sliding_window(b, h, q_idx, kv_idx):
    return (q_idx >= kv_idx) & (q_idx - kv_idx < 8)


SLOPES = torch.exp2(-torch.arange(1, H + 1, dtype=torch.float32))


def alibi(score, b, h, q_idx, kv_idx):
    return score + SLOPES[h] * (kv_idx - q_idx)


DOCUMENTS = torch.tensor([[0] * 20 + [1] * 17 + [2] * 11, [0] * 40 + [1] * 8])  # (B, L) document ids


def documents(b, h, q_idx, kv_idx):
    return (DOCUMENTS[b, q_idx] == DOCUMENTS[b, kv_idx]) & (q_idx >= kv_idx)


def soft_cap(score, b, h, q_idx, kv_idx):
    return 2.0 * torch.tanh(score / 2.0)


def _dense_mask(mask_mod, batch=B):
    """(B, H, L, L) bool: what mask_mod allows, for the SDPA twins."""
    return flex.create_mask(mask_mod, batch, H, L, L, device="cpu")


def _block_mask(mask_mod, batch=None, block=16):
    return flex.create_block_mask(mask_mod, batch, None, L, L, device="cpu", BLOCK_SIZE=block)


CASES = {  # name: (flex kwargs, heads of k and v)
    "neither": ({}, H),
    "causal": ({"block_mask": _block_mask(causal)}, H),
    "causal, default block size": ({"block_mask": flex.create_block_mask(causal, None, None, L, L, device="cpu")}, H),
    "sliding window": ({"block_mask": _block_mask(sliding_window)}, H),
    "alibi score_mod": ({"score_mod": alibi, "block_mask": _block_mask(causal)}, H),
    "alibi without a mask": ({"score_mod": alibi}, H),
    "document masking": ({"block_mask": _block_mask(documents, batch=B)}, H),
    "soft-capping": ({"score_mod": soft_cap, "block_mask": _block_mask(causal)}, H),
    "gqa and scale": ({"block_mask": _block_mask(causal), "enable_gqa": True, "scale": 0.3}, 2),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_emulation_matches_flexs_own_forward(name):
    kwargs, heads_kv = CASES[name]
    q, k, v = _qkv(heads_kv)
    with torch.no_grad():
        expected, expected_lse = flex.flex_attention(q, k, v, **kwargs, return_aux=flex.AuxRequest(lse=True))
        out, aux = dense_flex_attention(q, k, v, **kwargs, return_aux=flex.AuxRequest(lse=True))
    assert (out - expected).abs().max().item() <= FORWARD_TOL
    assert (aux.lse - expected_lse.lse).abs().max().item() <= FORWARD_TOL
    assert aux.max_scores is None


SDPA_TWINS = {  # name: (flex kwargs, heads of k and v, the same function with SDPA's arguments)
    "causal": ({"block_mask": _block_mask(causal)}, H, {"is_causal": True}),
    "sliding window": ({"block_mask": _block_mask(sliding_window)}, H, {"attn_mask": _dense_mask(sliding_window)}),
    "alibi": (
        {"score_mod": alibi, "block_mask": _block_mask(causal)},
        H,
        {
            "attn_mask": (SLOPES[:, None, None] * (torch.arange(L)[None, :] - torch.arange(L)[:, None])).masked_fill(
                ~torch.ones(L, L, dtype=torch.bool).tril(), -math.inf
            )
        },
    ),
    "document masking": ({"block_mask": _block_mask(documents, batch=B)}, H, {"attn_mask": _dense_mask(documents)}),
    "gqa": ({"block_mask": _block_mask(causal), "enable_gqa": True}, 2, {"is_causal": True, "enable_gqa": True}),
}


@pytest.mark.parametrize("name", list(SDPA_TWINS))
def test_the_emulations_gradient_is_sdpas_on_the_same_function(name):
    kwargs, heads_kv, sdpa_kwargs = SDPA_TWINS[name]
    inputs = _qkv(heads_kv, seed=1)
    twin_inputs = [t.clone().requires_grad_() for t in inputs]
    inputs = [t.clone().requires_grad_() for t in inputs]
    weights = torch.randn(B, H, L, E, generator=torch.Generator().manual_seed(2))
    (dense_flex_attention(*inputs, **kwargs) * weights).sum().backward()
    (F.scaled_dot_product_attention(*twin_inputs, **sdpa_kwargs) * weights).sum().backward()
    for mine, twin in zip(inputs, twin_inputs, strict=True):
        assert (mine.grad - twin.grad).abs().max().item() <= GRAD_TOL * twin.grad.abs().max().item()


def test_a_query_with_no_allowed_key_gets_zero_and_a_finite_gradient_as_in_flex():
    def nothing_for_the_first_rows(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx >= 4)

    mask = _block_mask(nothing_for_the_first_rows)
    q, k, v = _qkv()
    with torch.no_grad():
        expected = flex.flex_attention(q, k, v, block_mask=mask)
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out, lse = dense_flex_attention(q, k, v, block_mask=mask, return_lse=True)
    assert (out - expected).abs().max().item() <= FORWARD_TOL
    assert bool((out[:, :, :4] == 0).all()) and bool(torch.isneginf(lse[:, :, :4]).all())
    out.sum().backward()
    assert all(bool(torch.isfinite(t.grad).all()) for t in (q, k, v))


def test_the_capture_records_the_logits_before_score_mod_over_the_allowed_pairs_per_head():
    q, k, v = _qkv()
    with capture_attention() as records:
        dense_flex_attention(q, k, v, score_mod=soft_cap, block_mask=_block_mask(sliding_window))
    (record,) = records  # one call, one record: the tracer does not see the computation's own softmax again
    z = (q @ k.transpose(-2, -1)) / math.sqrt(E)  # (B, H, L, L): before the cap at 2
    allowed = _dense_mask(sliding_window)
    expected = z.abs().masked_fill(~allowed, 0).amax(dim=(-2, -1))  # (B, H)
    assert record.max_abs_logit.shape == (B, H)
    assert torch.allclose(record.max_abs_logit, expected, rtol=1e-6)
    assert float(expected.max()) > 2.0  # the cap would have hidden these
    softmax_input = soft_cap(z, None, None, None, None).masked_fill(~allowed, -math.inf)
    p = softmax_input.softmax(-1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(-1).mean(-1)  # (B, H): mean over queries
    assert torch.allclose(record.entropy, entropy, atol=1e-5)


def test_inside_the_scope_flex_trains_on_the_cpu_by_name_and_compiled_and_is_itself_again_after():
    from torch.nn.attention.flex_attention import flex_attention as by_name

    compiled = torch.compile(by_name)  # torchtitan's way: a compiled wrapper around flex_attention
    q, k, v = (t.requires_grad_() for t in _qkv())
    mask = _block_mask(causal)
    expected = dense_flex_attention(q, k, v, block_mask=mask)
    flex_itself = flex.flex_attention(*[t.detach() for t in (q, k, v)], block_mask=mask)  # before the swap
    with flex_attention_on_cpu("cpu"):
        with flex_attention_on_cpu("cpu"):  # nested: the swap is undone by the outer scope only
            assert torch.equal(by_name(q, k, v, block_mask=mask), expected)
        assert torch.equal(compiled(q, k, v, block_mask=mask), expected)
        plain = [t.detach() for t in (q, k, v)]  # nothing requires grad and no capture: flex itself
        assert torch.equal(by_name(*plain, block_mask=mask), flex_itself)
    with pytest.raises(NotImplementedError, match="does not support backward on CPU"):
        by_name(q, k, v, block_mask=mask)
    assert by_name.__code__.co_name == "flex_attention"
    assert by_name.__kwdefaults__ == {"return_aux": None}


def test_inside_the_scope_a_flex_call_is_captured_even_without_gradients():
    q, k, v = _qkv()
    with flex_attention_on_cpu("cpu"), torch.no_grad(), capture_attention() as records:
        flex.flex_attention(q, k, v, block_mask=_block_mask(causal))
    assert len(records) == 1


def test_what_cannot_be_emulated_is_refused_in_one_line():
    q, k, v = _qkv()
    with pytest.raises(TrainstabError, match=r"max_scores.*cannot be emulated"):
        dense_flex_attention(q, k, v, return_aux=flex.AuxRequest(lse=True, max_scores=True))
    other_length = flex.create_block_mask(causal, None, None, 2 * L, 2 * L, device="cpu")
    with pytest.raises(TrainstabError, match=r"block mask made for .* sequence length"):
        dense_flex_attention(q, k, v, block_mask=other_length)
    with pytest.raises(TrainstabError, match="enable_gqa=True"):
        dense_flex_attention(q, k[:, :2], v[:, :2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: flex runs as itself there")
def test_on_a_cuda_device_flex_runs_as_itself_and_is_recorded_from_the_dense_scores(monkeypatch):
    q, k, v = (t.cuda().requires_grad_() for t in _qkv())
    mask = flex.create_block_mask(causal, None, None, L, L, device="cuda")
    with torch.no_grad():
        expected = flex.flex_attention(q, k, v, block_mask=mask)
        emulated = dense_flex_attention(q, k, v, block_mask=mask)
    monkeypatch.setattr("trainstab.train.flex_emulation.dense_flex_attention", _not_called)
    with flex_attention_on_cpu("cuda"), capture_attention() as records:
        out = flex.flex_attention(q, k, v, block_mask=mask)
    out.sum().backward()  # flex's own backward
    assert torch.allclose(out.detach(), expected, atol=FORWARD_TOL)
    assert torch.allclose(emulated, expected, atol=FORWARD_TOL)
    assert len(records) == 1 and q.grad is not None


def _not_called(*args, **kwargs):
    raise AssertionError("flex can run this call itself: it must not be emulated")


def test_a_captured_call_that_flex_can_run_is_recorded_from_the_dense_scores_and_run_by_flex_itself(monkeypatch):
    q, k, v = _qkv()  # nothing requires grad: flex runs on the CPU, as it does on a GPU in training
    mask = _block_mask(sliding_window)
    with torch.no_grad():
        expected = flex.flex_attention(q, k, v, score_mod=soft_cap, block_mask=mask)
    with capture_attention() as emulated:
        dense_flex_attention(q, k, v, score_mod=soft_cap, block_mask=mask)
    monkeypatch.setattr("trainstab.train.flex_emulation.dense_flex_attention", _not_called)
    with flex_attention_on_cpu("cpu"), capture_attention() as records:
        out = flex.flex_attention(q, k, v, score_mod=soft_cap, block_mask=mask)
    assert torch.equal(out, expected)
    (record,) = records
    assert torch.equal(record.max_abs_logit, emulated[0].max_abs_logit)
    assert torch.equal(record.entropy, emulated[0].entropy)


def test_a_checkpointed_flex_model_trains_its_backward_calls_flex_again():
    from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig
    from trainstab.train.models import ModelSize
    from trainstab.train.sweep import run_sweep

    model = ModelConfig(width=16, depth=2, heads=2, context_length=16, vocab_size=512)
    name = "attention_models:flex_gpt_checkpointed"
    import attention_models

    bare = attention_models.flex_gpt_checkpointed(ModelSize.of(model))
    idx = torch.randint(0, 512, (2, 16))
    with flex_attention_on_cpu("cpu"):
        logits = bare(idx)  # the forward inside the scope, the backward outside: flex refuses the recompute
    with pytest.raises(NotImplementedError, match="does not support backward on CPU"):
        logits.sum().backward()
    config = SweepConfig(model_name=name, model=model, lrs=(1e-2,), train=TrainConfig(steps=3, batch_size=4))
    (run,) = run_sweep(config).runs
    assert len(run.losses) == 3 and all(math.isfinite(loss) for loss in run.losses)


def test_the_swap_is_undone_when_the_block_raises_and_flex_gives_no_eager_advice_inside(monkeypatch):
    q, k, v = (t.requires_grad_() for t in _qkv())
    with pytest.raises(KeyboardInterrupt), flex_attention_on_cpu("cpu"):
        raise KeyboardInterrupt
    with pytest.raises(NotImplementedError, match="does not support backward on CPU"):
        flex.flex_attention(q, k, v)
    plain = [t.detach() for t in (q, k, v)]
    shown = getattr(flex, "_WARNINGS_SHOWN", None)
    if shown is None:
        pytest.skip("this torch's flex shows its eager-mode advice another way")
    monkeypatch.setattr(flex, "_WARNINGS_SHOWN", set())  # flex warns once per process: as if for the first time
    with warnings.catch_warnings(record=True) as inside:
        warnings.simplefilter("always")
        with flex_attention_on_cpu("cpu"):
            flex.flex_attention(*plain)  # flex itself, eagerly: trainstab's doing, not advice for the user
    monkeypatch.setattr(flex, "_WARNINGS_SHOWN", set())
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        flex.flex_attention(*plain)
    assert not [w for w in inside if "without torch.compile" in str(w.message)]
    assert [w for w in outside if "without torch.compile" in str(w.message)]  # what the test would have caught


def test_a_row_of_nan_scores_stays_nan_as_in_flex():
    q, k, v = _qkv()
    q[0, 0, 5] = math.nan  # one query's scores are all NaN: a diverged model, not a masked row
    with torch.no_grad():
        expected = flex.flex_attention(q, k, v, block_mask=_block_mask(causal))
        out = dense_flex_attention(q, k, v, block_mask=_block_mask(causal))
    assert bool(torch.isnan(expected[0, 0, 5]).all()) and bool(torch.isnan(out[0, 0, 5]).all())


def test_under_bf16_autocast_the_scores_are_summed_in_fp32():
    q, k, v = _qkv()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dense_flex_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), block_mask=_block_mask(causal))
        with capture_attention() as records:
            dense_flex_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), block_mask=_block_mask(causal))
    z = (q.bfloat16().float() @ k.bfloat16().float().transpose(-2, -1)) / math.sqrt(E)  # fp32 sums of bf16 inputs
    expected = z.abs().masked_fill(~_dense_mask(causal), 0).amax(dim=(-2, -1))
    assert out.dtype == torch.bfloat16
    assert torch.allclose(records[0].max_abs_logit, expected, rtol=1e-6)
