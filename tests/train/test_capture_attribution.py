"""Layer and head attribution of captured logits, per implementation, under the sweep's stacked execution."""

import copy

import pytest
import torch
from attention_models import decoder_layers, mha, mingpt

from trainstab import capture_attention
from trainstab.train.engine import attention_metrics
from trainstab.train.models import FunctionalStack, ModelSize

SIZE = ModelSize(width=16, depth=2, heads=2, vocab_size=64, context_length=8)
HEAD_DIM = SIZE.width // SIZE.heads
EXACT = 1e-4
BOOST = 30.0  # one head's query weights times this: its logits dwarf every other head's


def _query_rows(model, factory, block, head, cross):
    """The rows of the weight that make head ``head``'s queries in block ``block``."""
    rows = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
    if factory is mha:
        return model.attentions[block].in_proj_weight, rows
    if factory is decoder_layers:
        layer = model.decoder.layers[block]
        return (layer.multihead_attn if cross else layer.self_attn).in_proj_weight, rows
    return model.blocks[block]["attn"].c_attn.weight, rows


def _largest_head(model):
    idx = torch.randint(0, SIZE.vocab_size, (3, SIZE.context_length), generator=torch.Generator().manual_seed(0))
    with capture_attention() as records:
        model(idx)
    metrics = attention_metrics(records, members=1)[0]
    heads = {k.removeprefix("attn/max_logit/"): v for k, v in metrics.items() if "/head" in k}
    return max(heads, key=heads.__getitem__)


@pytest.mark.parametrize(
    ("factory", "block", "head", "cross", "expected"),
    [
        (mha, 1, 0, False, "layer1/head0"),
        (mha, 0, 1, False, "layer0/head1"),
        (mingpt, 1, 1, False, "layer1/head1"),
        (mingpt, 0, 0, False, "layer0/head0"),
        # A decoder block attends twice, self then cross: layer i is the i-th attention call.
        (decoder_layers, 1, 1, False, "layer2/head1"),
        (decoder_layers, 0, 0, True, "layer1/head0"),
    ],
)
def test_a_grown_head_is_attributed_to_its_layer_and_head(factory, block, head, cross, expected):
    torch.manual_seed(0)
    model = factory(SIZE)
    weight, rows = _query_rows(model, factory, block, head, cross)
    with torch.no_grad():
        weight[rows] *= BOOST
    assert _largest_head(model) == expected


@pytest.mark.parametrize("factory", [mha, decoder_layers, mingpt], ids=lambda f: f.__name__)
def test_the_stacked_execution_records_each_member_as_its_own_model(factory):
    members = 3
    torch.manual_seed(0)
    template = factory(SIZE)
    stack = FunctionalStack(template, members, factory.__name__, SIZE)
    with torch.no_grad():  # members that differ: member k's weights scaled by 1 + k/2
        for p in stack.stacked.values():
            p.mul_(torch.tensor([1 + k / 2 for k in range(members)]).view(-1, *([1] * (p.dim() - 1))))
    idx = torch.randint(0, SIZE.vocab_size, (3, SIZE.context_length), generator=torch.Generator().manual_seed(1))
    with capture_attention() as stacked:
        stack(idx)
    alone = []
    for k in range(members):
        member = copy.deepcopy(template)
        with torch.no_grad():
            for name, p in member.named_parameters():
                p.copy_(stack.stacked[name.replace(".", "/")][k])
        with capture_attention() as records:
            member(idx)
        alone.append(records)
    assert len(stacked) == len(alone[0]) == (2 * SIZE.depth if factory is decoder_layers else SIZE.depth)
    for layer, record in enumerate(stacked):
        expected = torch.cat([alone[k][layer].max_abs_logit for k in range(members)])  # (M*B, H)
        torch.testing.assert_close(record.max_abs_logit, expected, rtol=EXACT, atol=0.0)
