import dataclasses

import pytest
import torch

from trainstab.core.config import ModelConfig
from trainstab.train.reference import ReferenceLM, ReferenceTransformer

SMALL = ModelConfig(vocab_size=64, context_length=8, width=16, heads=2, depth=2)


def _logits(config: ModelConfig, members: int = 1) -> torch.Tensor:
    idx = torch.randint(0, config.vocab_size, (3, config.context_length), generator=torch.Generator().manual_seed(0))
    return ReferenceTransformer(config, members=members)(idx)


def test_the_stack_maps_token_ids_to_logits_per_member():
    assert _logits(SMALL, members=3).shape == (3, 3, 8, 64)


def test_members_start_identical():
    logits = _logits(SMALL, members=3)
    assert torch.equal(logits[0], logits[2])


def test_reference_lm_is_a_plain_language_model():
    idx = torch.randint(0, 64, (2, 8))
    assert ReferenceLM(SMALL)(idx).shape == (2, 8, 64)


def test_outputs_are_causal():
    model = ReferenceLM(SMALL)
    a = torch.randint(0, 64, (1, 8), generator=torch.Generator().manual_seed(3))
    b = a.clone()
    b[0, -1] = (a[0, -1] + 1) % 64
    assert torch.allclose(model(a)[0, :-1], model(b)[0, :-1])


@pytest.mark.parametrize(
    "switch",
    [
        {"qk_layernorm": False},
        {"norm": "rmsnorm"},
        {"norm_placement": "post"},
        {"tie_embeddings": True},
        {"attention_scale": "inv_d_head"},
        {"init": "gpt2"},
        {"init_scale": 3.0},
        {"attention_softcap": 0.5},
        {"final_logit_softcap": 0.5},
    ],
)
def test_every_switch_changes_the_model(switch):
    assert not torch.allclose(_logits(SMALL), _logits(dataclasses.replace(SMALL, **switch)))


def test_qk_layernorm_adds_one_gain_per_head_dim_for_q_and_k():
    with_norm = dict(ReferenceTransformer(SMALL).named_parameters())
    without = dict(ReferenceTransformer(dataclasses.replace(SMALL, qk_layernorm=False)).named_parameters())
    assert set(with_norm) - set(without) == {f"blocks.{i}.{n}" for i in range(2) for n in ("q_norm", "k_norm")}
    assert with_norm["blocks.0.q_norm"].shape == (1, SMALL.head_dim)


def test_tied_embeddings_have_no_separate_unembedding():
    names = dict(ReferenceTransformer(dataclasses.replace(SMALL, tie_embeddings=True)).named_parameters())
    assert "unembedding" not in names


def test_mup_simple_scales_hidden_layer_lrs_by_base_over_width():
    config = dataclasses.replace(SMALL, width=64, parameterization="mup_simple", mup_base_width=16)
    multipliers = ReferenceTransformer(config).lr_multipliers()
    assert multipliers["blocks.0.mlp_out"] == 0.25
    assert multipliers["blocks.1.qkv"] == 0.25
    assert multipliers["embedding"] == 1.0
    assert multipliers["unembedding"] == 1.0
    assert set(ReferenceTransformer(SMALL).lr_multipliers().values()) == {1.0}


def test_paper_init_uses_truncated_normal_with_std_one_over_sqrt_fan_in():
    model = ReferenceTransformer(dataclasses.replace(SMALL, width=256, heads=4))
    weight = model.blocks[0].mlp_in[0]  # (256, 1024)
    bound = 2 / 256**0.5
    assert weight.abs().max() <= bound
    # A normal truncated at 2 std has std 0.88 of the untruncated one.
    assert weight.std().item() == pytest.approx(0.88 / 16, rel=0.03)


# Logits big enough for a cap to act: no qk-layernorm and a 10x init.
LOUD = dataclasses.replace(SMALL, qk_layernorm=False, init_scale=10.0)


def test_a_cap_far_above_the_logits_is_the_uncapped_model():
    far = dataclasses.replace(LOUD, attention_softcap=1e6, final_logit_softcap=1e6)
    assert torch.allclose(_logits(far), _logits(LOUD), atol=1e-4)


def test_the_final_softcap_bounds_the_output_logits():
    assert _logits(LOUD).abs().max() > 5.0
    assert _logits(dataclasses.replace(LOUD, final_logit_softcap=5.0)).abs().max() <= 5.0


def test_the_capture_records_attention_logits_before_the_softcap():
    from trainstab.train.capture import capture_attention

    def recorded_max(config: ModelConfig) -> float:  # of the first layer: its input is the same with or without a cap
        with capture_attention() as records:
            _logits(config)
        return float(records[0].max_abs_logit.max())

    uncapped = recorded_max(LOUD)
    assert uncapped > 5.0  # the cap below acts
    assert recorded_max(dataclasses.replace(LOUD, attention_softcap=5.0)) == pytest.approx(uncapped, rel=1e-4)
    assert not torch.allclose(_logits(LOUD), _logits(dataclasses.replace(LOUD, attention_softcap=5.0)))


def test_qk_clip_scales_each_head_down_to_tau_and_leaves_heads_within_it_alone():
    clipped = dataclasses.replace(LOUD, qk_clip=5.0)
    model = ReferenceTransformer(clipped, members=2)
    idx = torch.randint(0, 64, (3, 8), generator=torch.Generator().manual_seed(0))
    model(idx)
    before = [block.max_logit.clone() for block in model.blocks]
    assert max(float(peak.max()) for peak in before) > 5.0  # something to clip
    first = model.blocks[0]
    weights = first.qkv.detach().clone()
    model.after_optimizer_step(None)
    model(idx)
    # The first layer's input did not change: its heads' max |logit| is now exactly min(max, tau).
    assert torch.allclose(first.max_logit, before[0].clamp(max=5.0), rtol=1e-4)
    d = LOUD.width
    assert torch.equal(first.qkv[:, :, 2 * d :], weights[:, :, 2 * d :])  # W_v untouched
    roomy = ReferenceTransformer(dataclasses.replace(LOUD, qk_clip=1e9), members=2)
    untouched = [p.detach().clone() for p in roomy.parameters()]
    roomy(idx)
    roomy.after_optimizer_step(None)
    assert all(torch.equal(a, b) for a, b in zip(untouched, roomy.parameters(), strict=True))


def test_qk_clip_keeps_only_the_members_left_after_a_divergence():
    model = ReferenceTransformer(dataclasses.replace(LOUD, qk_clip=5.0), members=3)
    model(torch.randint(0, 64, (3, 8), generator=torch.Generator().manual_seed(0)))
    for block in model.blocks:  # what the engine's drop-out does to the parameters
        block.qkv = torch.nn.Parameter(block.qkv.detach()[torch.tensor([0, 2])])
    model.after_optimizer_step(torch.tensor([0, 2]))  # shapes agree: no error
    assert model.blocks[0].qkv.shape[0] == 2


def test_qk_clip_with_qk_layernorm_is_refused_with_the_fix():
    from trainstab.core.config import SweepConfig, validate
    from trainstab.core.errors import TrainstabError

    with pytest.raises(TrainstabError, match="qk_layernorm=false"):
        validate(SweepConfig(model=dataclasses.replace(SMALL, qk_clip=100.0)))


def test_with_qk_clip_the_capture_still_sees_one_attention_call_per_layer():
    from trainstab.train.capture import capture_attention

    with capture_attention() as records:
        _logits(dataclasses.replace(LOUD, qk_clip=5.0))
    assert len(records) == LOUD.depth
