"""``hf:<model_type>``: every causal LM type of the installed transformers builds at the requested size, or is
refused in one line saying why.

``python tests/train/test_hf_types.py`` prints how many build and the refusals grouped by reason.
"""

import collections
import re
import sys
import time

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from trainstab import TrainstabError
from trainstab.core.config import ModelConfig
from trainstab.train.capture import capture_attention
from trainstab.train.hf_models import hf_model, widest_allowed
from trainstab.train.models import ModelSize, check_model

CONFIG = ModelConfig()  # trainstab's default size
SIZE = ModelSize.of(CONFIG)
TYPES = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
SEED = 0


def build(model_type: str, **options) -> nn.Module:
    torch.manual_seed(SEED)
    return hf_model(model_type, SIZE, options)


def assert_at_the_requested_size(model: nn.Module) -> None:
    config = model.config
    assert config.hidden_size == SIZE.width
    assert config.num_hidden_layers == SIZE.depth
    blocks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == SIZE.depth]
    assert blocks, "no list of depth blocks"
    wide = {n: tuple(p.shape) for n, p in model.named_parameters() if max(p.shape[-2:]) > widest_allowed(SIZE)}
    assert wide == {}


def assert_a_one_line_refusal(refusal: TrainstabError, model_type: str) -> None:
    message = str(refusal)
    assert "\n" not in message
    assert message.startswith(f"hf:{model_type} is not supported: ")


#: Types the README and the zoo use, and the other families people train: each must build, never be refused
#: (a change that refused every type would otherwise pass the loop below).
MUST_BUILD = [
    "llama",
    "gpt2",
    "olmo2",
    "gemma2",
    "gemma3_text",
    "qwen2",
    "qwen3",
    "mistral",
    "phi",
    "phi3",
    "falcon",
    "gpt_neox",
    "opt",
    "bloom",
    "mixtral",
    "qwen2_moe",
    "starcoder2",
    "stablelm",
]


@pytest.mark.long
@pytest.mark.parametrize("model_type", TYPES)
def test_every_causal_lm_type_builds_at_the_requested_size_or_is_refused_in_one_line(model_type):
    try:
        model = build(model_type)
    except TrainstabError as refusal:
        assert model_type not in MUST_BUILD, refusal
        assert_a_one_line_refusal(refusal, model_type)
        return
    assert_at_the_requested_size(model)
    idx = torch.randint(0, SIZE.vocab_size, (1, SIZE.context_length), generator=torch.Generator().manual_seed(SEED))
    with capture_attention() as records:
        logits = model(idx).logits
    assert logits.shape == (1, SIZE.context_length, SIZE.vocab_size)
    assert records, "no attention logits captured"
    try:
        check_model(f"hf:{model_type}", CONFIG, seed=SEED)  # as a sweep trains it: stacked, with gradients
    except TrainstabError as refusal:  # built, but its logits see later tokens (xlnet): the model check's rule
        assert model_type not in MUST_BUILD, refusal
        assert "\n" not in str(refusal)
        assert str(refusal).startswith(f"model 'hf:{model_type}' is not causal: changing the token at position ")


def test_falcon_builds_at_the_requested_size_with_its_mlp_four_times_the_width():
    model = build("falcon")
    assert_at_the_requested_size(model)
    assert model.config.head_dim == SIZE.width // SIZE.heads  # derived: FalconConfig.head_dim has no setter
    assert model.transformer.h[0].mlp.dense_h_to_4h.weight.shape == (4 * SIZE.width, SIZE.width)
    check_model("hf:falcon", CONFIG, seed=SEED)


def test_a_bert_lm_head_is_built_as_a_decoder_and_refused_when_it_would_see_later_tokens():
    assert_at_the_requested_size(build("bert"))
    # Causality is the model check's rule, as for every model (tests/train/test_causal_models.py).
    leak = r"^model 'hf:bert\[is_decoder=false\]' is not causal: changing the token at position \d+ changed the logits"
    with pytest.raises(TrainstabError, match=leak):
        check_model("hf:bert[is_decoder=false]", CONFIG, seed=SEED)


def test_a_layer_left_wider_than_the_size_allows_is_refused_naming_it():
    with pytest.raises(TrainstabError, match=r"^hf:llama is not supported: at width 32 its model\.layers\.0\.mlp"):
        build("llama", intermediate_size=4096)


def test_a_multimodal_type_is_refused_naming_its_language_model():
    with pytest.raises(TrainstabError, match=r"^hf:gemma3 is not supported: .*vision_config.*use .* hf:gemma3_text$"):
        build("gemma3")


def _reason(message: str) -> str:
    """A refusal's reason without the type's particulars (shapes, error texts)."""
    if " is not causal: " in message:
        return "not a causal LM (the model check: its logits see later tokens)"
    if " is not supported: " not in message:
        return f"built, but trainstab's model check fails ({message})"
    why = message.split(" is not supported: ", 1)[1]
    if why.startswith("at width"):
        return "a matrix still wider than the vocabulary or 8 x width"
    return re.split(r" \(|; |: ", why, maxsplit=1)[0]


if __name__ == "__main__":
    reasons: dict[str, list[str]] = collections.defaultdict(list)
    built = []
    began = time.perf_counter()
    for model_type in TYPES:
        try:
            build(model_type)
            check_model(f"hf:{model_type}", CONFIG, seed=SEED)
            built.append(model_type)
        except TrainstabError as refusal:
            reasons[_reason(str(refusal))].append(model_type)
    print(f"transformers lists {len(TYPES)} causal LM types; {len(built)} build at {SIZE} and train a step's forward")
    print(f"{len(TYPES) - len(built)} refused ({time.perf_counter() - began:.0f} s):")
    for reason, types in sorted(reasons.items(), key=lambda item: -len(item[1])):
        print(f"  {len(types):3d}  {reason}: {', '.join(types)}")
    sys.exit(0)
