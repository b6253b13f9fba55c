"""Every attention implementation: the captured max |logit| equals one computed independently.

Each test runs an attention in training mode (gradients on) inside a capture,
then computes z = q kᵀ * scale itself, from the module's own weights and the
inputs it was called with, masks applied by hand, and requires the captured
per-(batch, head) maximum to agree to EXACT relative.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from trainstab import capture_attention

EXACT = 1e-4  # relative agreement the issue asks for; fp32 recomputation of the same products
B, H, T, D = 2, 4, 6, 8


def _randn(*shape, seed, scale=3.0):
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale).requires_grad_()


def _expected(q, k, scale, allowed=None):
    """Max |q kᵀ * scale| per (batch, head) over the allowed pairs, in float64. q, k: (B, H, T, Dh)."""
    z = (q.detach().double() @ k.detach().double().transpose(-2, -1)) * scale
    if allowed is not None:
        z = z.masked_fill(~allowed, 0.0)
    return z.abs().amax(dim=(-2, -1)).float()


def _assert_one_record_matches(records, expected):
    assert len(records) == 1, f"{len(records)} records for one attention call"
    torch.testing.assert_close(records[0].max_abs_logit, expected, rtol=EXACT, atol=0.0)


CAUSAL = torch.ones(T, T, dtype=torch.bool).tril()
RANDOM_MASK = torch.rand(T, T, generator=torch.Generator().manual_seed(9)) > 0.4
RANDOM_MASK[:, 0] = True  # every query may attend somewhere


# --- scaled_dot_product_attention -------------------------------------------------------------


@pytest.mark.parametrize("backend", [None, SDPBackend.MATH], ids=["fused", "math"])
@pytest.mark.parametrize(
    ("kwargs", "allowed", "scale"),
    [
        ({"is_causal": True}, CAUSAL, None),
        ({"attn_mask": RANDOM_MASK}, RANDOM_MASK, None),
        ({"attn_mask": torch.zeros(T, T).masked_fill(~RANDOM_MASK, -math.inf)}, RANDOM_MASK, None),
        ({"attn_mask": torch.zeros(T, T).masked_fill(~CAUSAL, torch.finfo(torch.float32).min)}, CAUSAL, None),
        ({"is_causal": True, "scale": 0.1}, CAUSAL, 0.1),
        ({"attn_mask": RANDOM_MASK, "scale": 2.0}, RANDOM_MASK, 2.0),
    ],
    ids=["is_causal", "bool-mask", "additive-inf-mask", "additive-finfo-min-mask", "causal-scale", "mask-scale"],
)
def test_sdpa_logits_are_exact(kwargs, allowed, scale, backend):
    q, k, v = (_randn(B, H, T, D, seed=s) for s in range(3))
    with sdpa_kernel(backend) if backend else torch.enable_grad(), capture_attention() as records:
        F.scaled_dot_product_attention(q, k, v, **kwargs)
    _assert_one_record_matches(records, _expected(q, k, scale or 1 / math.sqrt(D), allowed))


def test_sdpa_non_square_causal_mask_is_upper_left_aligned_as_pytorch_documents():
    q, (k, v) = _randn(B, H, 3, D, seed=0), (_randn(B, H, T, D, seed=s) for s in (1, 2))
    with capture_attention() as records:
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    _assert_one_record_matches(records, _expected(q, k, 1 / math.sqrt(D), torch.ones(3, T, dtype=torch.bool).tril()))


@pytest.mark.parametrize("spelling", ["enable_gqa", "repeated-heads"])
def test_grouped_query_attention_logits_are_exact(spelling):
    q = _randn(B, H, T, D, seed=0)
    k, v = (_randn(B, H // 2, T, D, seed=s) for s in (1, 2))
    with capture_attention() as records:
        if spelling == "enable_gqa":
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), is_causal=True)
    _assert_one_record_matches(records, _expected(q, k.repeat_interleave(2, 1), 1 / math.sqrt(D), CAUSAL))


# --- nn.MultiheadAttention ---------------------------------------------------------------------


def _mha_expected(mha, query, key, batch_first, allowed):
    """q, k from the module's in-projection; (B, H, Tq, Tk) allowed."""
    if not batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    e, h = mha.embed_dim, mha.num_heads
    if mha._qkv_same_embed_dim:
        wq, wk = mha.in_proj_weight[:e], mha.in_proj_weight[e : 2 * e]
    else:
        wq, wk = mha.q_proj_weight, mha.k_proj_weight
    bq, bk = mha.in_proj_bias[:e], mha.in_proj_bias[e : 2 * e]
    q = F.linear(query, wq, bq).unflatten(-1, (h, e // h)).transpose(1, 2)  # (B, H, Tq, Dh)
    k = F.linear(key, wk, bk).unflatten(-1, (h, e // h)).transpose(1, 2)
    return _expected(q, k, 1 / math.sqrt(e // h), allowed)


KEY_PADDING = torch.zeros(B, T, dtype=torch.bool)
KEY_PADDING[1, -2:] = True  # the second sequence's last two keys are padding


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("average_attn_weights", [True, False])
@pytest.mark.parametrize(
    "masks",
    ["none", "bool-causal", "float-causal", "key-padding", "causal-and-key-padding", "is-causal"],
)
def test_multihead_attention_logits_are_exact(need_weights, batch_first, average_attn_weights, masks):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(H * D, H, batch_first=batch_first)
    x = _randn(B, T, H * D, seed=4, scale=1.0)
    if not batch_first:
        x = x.transpose(0, 1)
    kwargs = {}
    allowed = torch.ones(B, 1, T, T, dtype=torch.bool)
    if masks in ("bool-causal", "causal-and-key-padding", "is-causal"):
        kwargs["attn_mask"] = ~CAUSAL
        allowed = allowed & CAUSAL
    if masks == "float-causal":
        kwargs["attn_mask"] = torch.zeros(T, T).masked_fill(~CAUSAL, -math.inf)
        allowed = allowed & CAUSAL
    if masks in ("key-padding", "causal-and-key-padding"):
        kwargs["key_padding_mask"] = KEY_PADDING
        allowed = allowed & ~KEY_PADDING[:, None, None, :]
    if masks == "is-causal":
        kwargs["is_causal"] = True
    with capture_attention() as records:
        mha(x, x, x, need_weights=need_weights, average_attn_weights=average_attn_weights, **kwargs)
    _assert_one_record_matches(records, _mha_expected(mha, x, x, batch_first, allowed))


def test_multihead_attention_with_its_own_key_width_is_exact():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(H * D, H, kdim=5, vdim=7, batch_first=True)
    x, memory = _randn(B, T, H * D, seed=1, scale=1.0), _randn(B, T + 2, 5, seed=2, scale=1.0)
    with capture_attention() as records:
        mha(x, memory, _randn(B, T + 2, 7, seed=3))
    _assert_one_record_matches(records, _mha_expected(mha, x, memory, True, None))


# --- torch's Transformer layers ----------------------------------------------------------------


def _attention_inputs(module):
    """Record every (query, key, attn_mask, key_padding_mask) an nn.MultiheadAttention is called with."""
    calls = []

    def hook(mod, args, kwargs):
        query, key = args[0], args[1]
        calls.append((query.detach(), key.detach(), kwargs.get("attn_mask"), kwargs.get("key_padding_mask")))

    module.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_encoder_layer_with_a_causal_mask_is_exact(norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(H * D, H, 4 * H * D, dropout=0.0, batch_first=True, norm_first=norm_first)
    calls = _attention_inputs(layer.self_attn)
    x = _randn(B, T, H * D, seed=1, scale=1.0)
    mask = nn.Transformer.generate_square_subsequent_mask(T)
    with capture_attention() as records:
        layer(x, src_mask=mask, is_causal=True)
    (query, key, _, _) = calls[0]
    _assert_one_record_matches(records, _mha_expected(layer.self_attn, query, key, True, CAUSAL))


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_decoder_layer_self_and_cross_attention_are_exact(norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(H * D, H, 4 * H * D, dropout=0.0, batch_first=True, norm_first=norm_first)
    self_calls, cross_calls = _attention_inputs(layer.self_attn), _attention_inputs(layer.multihead_attn)
    x, memory = _randn(B, T, H * D, seed=1, scale=1.0), _randn(B, T + 3, H * D, seed=2, scale=1.0)
    mask = nn.Transformer.generate_square_subsequent_mask(T)
    with capture_attention() as records:
        layer(x, memory, tgt_mask=mask, tgt_is_causal=True, memory_key_padding_mask=None)
    assert len(records) == 2  # self-attention, then cross-attention, in call order
    (q_in, k_in, _, _), (cq_in, ck_in, _, _) = self_calls[0], cross_calls[0]
    torch.testing.assert_close(
        records[0].max_abs_logit, _mha_expected(layer.self_attn, q_in, k_in, True, CAUSAL), rtol=EXACT, atol=0.0
    )
    torch.testing.assert_close(
        records[1].max_abs_logit, _mha_expected(layer.multihead_attn, cq_in, ck_in, True, None), rtol=EXACT, atol=0.0
    )


# --- hand-written attention --------------------------------------------------------------------


def _mingpt(q, k, v):
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
    att = att.masked_fill(CAUSAL.float().view(1, 1, T, T) == 0, float("-inf"))
    return F.softmax(att, dim=-1) @ v


def _nanogpt_fallback(q, k, v):
    att = q @ k.transpose(-2, -1) / math.sqrt(k.size(-1))
    att = att.masked_fill(~CAUSAL, float("-inf")).softmax(dim=-1)
    return att @ v


def _einsum_additive_mask(q, k, v):  # x-transformers without flash: einsum, a finfo.max fill, torch.softmax
    dots = torch.einsum("bhid,bhjd->bhij", q, k) * D**-0.5
    dots = dots.masked_fill(~CAUSAL, -torch.finfo(dots.dtype).max)
    return torch.einsum("bhij,bhjd->bhid", torch.softmax(dots, dim=-1), v)


def _where_mask(q, k, v):
    att = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(D)
    return torch.where(CAUSAL, att, torch.tensor(-1e9)).softmax(-1) @ v


def _merged_heads_bmm(q, k, v):  # heads folded into the batch, an additive mask through baddbmm
    q3, k3, v3 = (z.reshape(B * H, T, D) for z in (q, k, v))
    mask = torch.zeros(T, T).masked_fill(~CAUSAL, -math.inf)
    att = torch.baddbmm(mask, q3 / math.sqrt(D), k3.transpose(1, 2))
    return torch.bmm(att.softmax(-1), v3).view(B, H, T, D)


def _fp32_softmax_of_bf16(q, k, v):  # transformers' upcast: softmax(..., dtype=float32).to(dtype)
    qb, kb = q.bfloat16(), k.bfloat16()
    att = (qb @ kb.transpose(-2, -1)) * D**-0.5 + torch.zeros(T, T).masked_fill(~CAUSAL, -math.inf).bfloat16()
    return (F.softmax(att, dim=-1, dtype=torch.float32).to(qb.dtype) @ v.bfloat16()).float()


HAND_WRITTEN = [_mingpt, _nanogpt_fallback, _einsum_additive_mask, _where_mask, _fp32_softmax_of_bf16]


@pytest.mark.parametrize("attention", HAND_WRITTEN, ids=lambda f: f.__name__.strip("_"))
def test_hand_written_attention_logits_are_exact(attention):
    q, k, v = (_randn(B, H, T, D, seed=s) for s in range(3))
    with capture_attention() as records:
        attention(q, k, v)
    if attention is _fp32_softmax_of_bf16:  # recomputed in fp32 from the bf16 q and k the model multiplied
        q, k = q.bfloat16().float(), k.bfloat16().float()
    _assert_one_record_matches(records, _expected(q, k, 1 / math.sqrt(D), CAUSAL))


def test_heads_folded_into_the_batch_are_exact_per_row():
    q, k, v = (_randn(B, H, T, D, seed=s) for s in range(3))
    with capture_attention() as records:
        _merged_heads_bmm(q, k, v)
    expected = _expected(q, k, 1 / math.sqrt(D), CAUSAL).reshape(B * H, 1)  # heads unknown: one row each
    _assert_one_record_matches(records, expected)


def test_soft_capped_logits_are_recorded_before_the_cap():
    q, k, v = (_randn(B, H, T, D, seed=s, scale=6.0) for s in range(3))
    cap = 20.0  # a soft-cap well below these logits (Gemma 2 uses 50)
    with capture_attention() as records:
        z = (q @ k.transpose(-2, -1)) * D**-0.5
        z = torch.tanh(z / cap) * cap
        z = z + torch.zeros(T, T).masked_fill(~CAUSAL, torch.finfo(torch.float32).min)
        F.softmax(z, dim=-1) @ v
    expected = _expected(q, k, D**-0.5, CAUSAL)
    assert expected.max() > 3 * cap  # the test means something: the cap hides most of it
    _assert_one_record_matches(records, expected)


def test_a_per_head_temperature_is_part_of_the_logit():
    q, k, v = (_randn(B, H, T, D, seed=s) for s in range(3))
    temperature = torch.linspace(0.5, 2.0, H).view(1, H, 1, 1)
    with capture_attention() as records:
        ((q @ k.transpose(-2, -1)) * temperature).masked_fill(~CAUSAL, -math.inf).softmax(-1) @ v
    expected = _expected(q, k, 1.0, CAUSAL) * temperature.view(1, H)
    _assert_one_record_matches(records, expected)


# --- transformers eager attention --------------------------------------------------------------


def _tiny_hf(model_type, implementation, **overrides):
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(model_type)
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    sizes.update(intermediate_size=64, vocab_size=64, max_position_embeddings=T, attention_dropout=0.0)
    for name, value in {**sizes, **overrides}.items():
        setattr(config, name, value)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation=implementation)
    return model.train()


def _eager_inputs(monkeypatch, module):
    """Record (query, key, mask, scaling) of every eager attention call of a transformers model."""
    calls = []
    original = module.eager_attention_forward

    def spy(mod, query, key, value, attention_mask, scaling=None, **kwargs):
        calls.append((query.detach(), key.detach(), attention_mask, scaling))
        return original(mod, query, key, value, attention_mask, scaling=scaling, **kwargs)

    monkeypatch.setattr(module, "eager_attention_forward", spy)
    return calls


def _hf_expected(query, key, mask, scaling):
    key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)  # GQA: repeat_kv
    allowed = mask if mask is None or mask.dtype == torch.bool else mask == 0
    return _expected(query, key, scaling, allowed)


@pytest.mark.parametrize(
    ("model_type", "overrides"),
    [("llama", {}), ("gemma2", {"attn_logit_softcapping": 1.0, "query_pre_attn_scalar": 8})],
    ids=["llama-gqa", "gemma2-soft-capped"],
)
def test_transformers_eager_attention_is_exact(monkeypatch, model_type, overrides):
    model = _tiny_hf(model_type, "eager", **overrides)
    with torch.no_grad():  # init std 0.02 gives logits far below any cap: grow q and k
        for name, parameter in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                parameter.mul_(20.0)
    module = __import__(f"transformers.models.{model_type}.modeling_{model_type}", fromlist=["x"])
    calls = _eager_inputs(monkeypatch, module)
    idx = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(0))
    with capture_attention() as records:
        model(idx)
    assert len(records) == len(calls) == 2
    for record, (query, key, mask, scaling) in zip(records, calls, strict=True):
        expected = _hf_expected(query, key, mask, scaling)
        torch.testing.assert_close(record.max_abs_logit, expected, rtol=EXACT, atol=0.0)
    if "attn_logit_softcapping" in overrides:  # a cap of 1 hides the logits: the pre-cap ones are recorded
        assert max(float(r.max_abs_logit.max()) for r in records) > 3.0


def test_transformers_sdpa_and_eager_record_the_same_logits():
    idx = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(0))
    captured = []
    for implementation in ("sdpa", "eager"):
        with capture_attention() as records:
            _tiny_hf("llama", implementation)(idx)
        captured.append(records)
    for sdpa, eager in zip(*captured, strict=True):
        torch.testing.assert_close(sdpa.max_abs_logit, eager.max_abs_logit, rtol=EXACT, atol=0.0)


# --- the fused CUDA kernels ----------------------------------------------------------------------

CUDA_BACKENDS = [
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.MATH,
]


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device here: the fused CUDA SDPA kernels (flash, memory-efficient, cuDNN) need a GPU machine",
)
@pytest.mark.parametrize("backend", CUDA_BACKENDS, ids=lambda b: b.name.lower())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("masking", ["is_causal", "additive-mask", "gqa"])
def test_cuda_sdpa_kernels_logits_are_exact(backend, dtype, masking):
    q = _randn(B, H, T, 64, seed=0).detach().to("cuda", dtype).requires_grad_()
    kv_heads = H // 2 if masking == "gqa" else H
    k, v = (_randn(B, kv_heads, T, 64, seed=s).detach().to("cuda", dtype).requires_grad_() for s in (1, 2))
    kwargs = {"is_causal": True} if masking != "additive-mask" else {}
    if masking == "additive-mask":
        kwargs["attn_mask"] = torch.zeros(T, T, device="cuda", dtype=dtype).masked_fill(~CAUSAL.cuda(), -math.inf)
    if masking == "gqa":
        kwargs["enable_gqa"] = True
    try:
        with sdpa_kernel(backend), capture_attention() as records:
            F.scaled_dot_product_attention(q, k, v, **kwargs)
    except RuntimeError as error:  # e.g. flash attention takes no attn_mask
        pytest.skip(f"{backend.name} does not run this case on this GPU: {str(error).splitlines()[0]}")
    k_all = k.repeat_interleave(H // kv_heads, dim=1)
    _assert_one_record_matches(records, _expected(q.float(), k_all.float(), 1 / 8, CAUSAL.cuda()).cuda())
