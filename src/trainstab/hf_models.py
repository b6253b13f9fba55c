"""``hf:<model_type>``: a tiny causal LM of any transformers architecture, built from its config alone.

No weights are downloaded. The config is built with the requested sizes as
constructor arguments, so the fields a config derives from them (falcon's
``head_dim`` and ``ffn_hidden_size``, a hybrid's ``layer_types``) follow. Every
other integer field is sized by what its name says it is (steps numbered in
:func:`sized_fields`): a width scales with the width, a per-head size with the
head dimension, a head count with the heads. The model is then built on the
meta device and refused, before any memory is spent, if a matrix is still
wider than :func:`widest_allowed`: a field this module does not map would
otherwise leave a layer at its full size (falcon's MLP at 18,176).

A type that cannot be built this way is refused with one line naming why;
:data:`REFUSED` lists the ones no generic rule covers.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NoReturn

import torch
from torch import nn

from trainstab.errors import TrainstabError

if TYPE_CHECKING:
    from trainstab.models import ModelSize

#: Exact field names of each size trainstab asks for.
WIDTH = ("hidden_size", "n_embd", "d_model")
DEPTH = ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "decoder_layers", "encoder_layers")
DEPTH += ("num_decoder_layers", "num_encoder_layers")
HEADS = ("num_attention_heads", "n_head", "n_heads", "num_heads", "attention_heads")
HEADS += ("decoder_attention_heads", "encoder_attention_heads", "num_decoder_attention_heads")
HEADS += ("num_encoder_attention_heads",)
#: Key/value head counts: as many as the query heads (trainstab's ``heads`` is both).
KV_HEADS = ("num_key_value_heads", "num_kv_heads", "kv_n_heads", "multi_query_group_num", "num_query_groups")
POSITIONS = ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "max_target_positions")
#: A dense MLP's width: 4 x width, as in every model trainstab trains (ModelConfig.mlp_ratio).
DENSE_MLP = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "decoder_ffn_dim", "encoder_ffn_dim")
DENSE_MLP += ("d_ff", "dff", "dim_ff", "d_inner", "feed_forward_size", "intermediate_size_mlp")
VOCAB = ("vocab_size", "decoder_vocab_size", "vocab_size_per_layer_input", "unpadded_vocab_size")

#: A per-head size: scales with the head dimension (MLA's rope and nope parts, a mamba head, a rotary slice).
PER_HEAD = re.compile(r"head_dim|head_size|d_head|dim_head|headdim|kv_channels|rotary_dim|query_pre_attn_scalar")
#: A count of heads (linear-attention, SSM, indexer heads) or of head groups: scales with the heads.
HEAD_COUNT = re.compile(r"heads|n_groups|ngroups")
#: A width: an MLP, an expert, a low-rank projection, an embedding or an SSM inner size scales with the width.
WIDE = re.compile(
    r"intermediate|ffn|^d?ff$|dim_ff|inner|hidden_size|hidden_dim|rank|_width$|embed_dim|embedding_dim|"
    r"embedding_size|emb_dim|d_ssm|proj_dim|mid_dim"
)
#: Names that contain a width's word but are not a width (rounding multiples, counts, windows, token ids).
NOT_A_SIZE = re.compile(r"multiple|round|factor|ratio|top_?k|^num_|^n_|chunk|window|kernel|conv|token|layer")

#: Types no generic rule builds, and why (transformers 5).
REFUSED: dict[str, str] = {}


def hf_model(model_type: str, size: ModelSize, options: dict[str, Any]) -> nn.Module:
    """A tiny transformers causal LM of ``model_type`` at ``size`` (no download); raises :class:`TrainstabError`.

    ``options`` are config fields set after the sizes, so they win (``hf:llama[tie_word_embeddings=true]``).
    """
    try:
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:
        raise TrainstabError(
            f"model 'hf:{model_type}' needs transformers; install it with pip install 'trainstab[hf]'"
        ) from None
    # 1. The type: one transformers knows, with a causal LM, and none this module refuses.
    try:
        default = AutoConfig.for_model(model_type)
    except ValueError:
        raise TrainstabError(f"transformers has no model type {model_type!r}; use e.g. hf:gpt2 or hf:llama") from None
    except Exception as error:  # a config class that does not validate its own defaults
        _refuse(model_type, f"its default config does not build ({type(error).__name__}: {_first_line(error)})")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        _refuse(model_type, "transformers has no causal LM (AutoModelForCausalLM) for it")
    if model_type in REFUSED:
        _refuse(model_type, REFUSED[model_type])
    _refuse_multimodal(model_type, default, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    # 2. The config, the sizes and the user's options given to its constructor: derived fields follow them.
    fields = default.to_dict()
    unknown = [key for key in options if key not in fields]
    if unknown:
        raise TrainstabError(
            f"model 'hf:{model_type}': its config ({type(default).__name__}) has no field {unknown[0]!r}; "
            "options of an hf: model are config fields, e.g. hf:llama[tie_word_embeddings=true]"
        )
    try:
        config = AutoConfig.for_model(model_type, **{**sized_fields(fields, size), **options})
    except Exception as error:
        _refuse(model_type, f"its config refuses the sizes ({type(error).__name__}: {_first_line(error)})")
    # 3. Built on the meta device first: a layer a field left at full size is refused before it costs memory.
    with torch.device("meta"):
        shell = _build(AutoModelForCausalLM, config, model_type)
    _check_widths(model_type, shell, size)
    # transformers' own choice of attention: SDPA where the architecture supports it,
    # eager where it does not (Gemma 2, whose attention logits are soft-capped).
    return _build(AutoModelForCausalLM, config, model_type)


def sized_fields(fields: dict[str, Any], size: ModelSize) -> dict[str, Any]:
    """The constructor arguments that make a config of default ``fields`` the requested ``size``.

    A nested config (dbrx's ``ffn_config``, a composite's ``text_config``) is sized by the same rules.
    """
    width0 = next((fields[name] for name in WIDTH if isinstance(fields.get(name), int)), None)
    heads0 = next((fields[name] for name in HEADS if isinstance(fields.get(name), int)), None)
    head_dim0 = fields.get("head_dim") or (width0 // heads0 if width0 and heads0 else None)
    return _sized(fields, size, width0, heads0, head_dim0)


def _sized(
    fields: dict[str, Any], size: ModelSize, width0: int | None, heads0: int | None, head_dim0: int | None
) -> dict[str, Any]:
    head_dim = size.width // size.heads
    sized: dict[str, Any] = {"use_cache": False, "is_decoder": True}  # trained, never generating; causal
    for name, value in fields.items():
        if isinstance(value, dict) and isinstance(value.get("model_type", ""), str):
            inner = _sized(value, size, width0, heads0, head_dim0)
            sized[name] = {**value, **{k: v for k, v in inner.items() if k in value}}
            continue
        # 1. No dropout: the proxy measures the architecture's dynamics, not regularisation noise.
        if isinstance(value, float) and ("dropout" in name or name.endswith("_pdrop")):
            sized[name] = 0.0
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        # 2. The sizes trainstab asks for, by their exact names.
        if name in WIDTH:
            sized[name] = size.width
        elif name in DEPTH:
            sized[name] = size.depth
        elif name in HEADS or name in KV_HEADS:
            sized[name] = size.heads
        elif name in DENSE_MLP:
            sized[name] = 4 * size.width
        elif name == "head_dim":
            sized[name] = head_dim
        elif name in POSITIONS:
            sized[name] = size.context_length
        elif name in VOCAB:
            sized[name] = size.vocab_size
        # 3. A special token past the vocabulary has no embedding row: none (generation only needs them).
        elif name.endswith(("token_id", "token_index")):
            if value >= size.vocab_size:
                sized[name] = None
        # 4. The rest by what their name says: per-head sizes, head counts, widths.
        elif PER_HEAD.search(name) and head_dim0:
            sized[name] = max(2, 2 * round(value * head_dim / head_dim0 / 2))  # even: rotary halves it
        elif HEAD_COUNT.search(name) and heads0:
            sized[name] = max(1, round(value * size.heads / heads0))
        elif WIDE.search(name) and not NOT_A_SIZE.search(name) and width0:
            sized[name] = max(1, round(value * size.width / width0)) if value > 0 else value
    return sized


def widest_allowed(size: ModelSize) -> int:
    """The widest a matrix of a model at ``size`` may be: the vocabulary, or eight times the width (an MLP's 4x,
    gated and fused, is 8x)."""
    return max(size.vocab_size, 8 * size.width)


def _check_widths(model_type: str, model: nn.Module, size: ModelSize) -> None:
    """Refuse a model with a matrix wider than :func:`widest_allowed` (leading dims, such as experts, excepted)."""
    limit = widest_allowed(size)
    for name, parameter in model.named_parameters():
        if any(dim > limit for dim in parameter.shape[-2:]):
            _refuse(
                model_type,
                f"at width {size.width} its {name} is still {tuple(parameter.shape)}, wider than {limit} "
                f"(max(vocab_size, 8 * width)): its config has a size field trainstab does not map",
            )


def _refuse_multimodal(model_type: str, config: Any, causal_lms: dict[str, str]) -> None:
    """Refuse a composite of a language model and a vision or audio tower, naming its text model."""
    towers = [name for name in getattr(config, "sub_configs", {}) if re.search("vision|audio|vq|image", name)]
    if not towers:
        return
    text_type = getattr(getattr(config, "text_config", None), "model_type", None)
    use = f"; use its text model hf:{text_type}" if text_type in causal_lms and text_type != model_type else ""
    _refuse(model_type, f"it is multimodal ({', '.join(towers)}){use}")


def _build(auto: Any, config: Any, model_type: str) -> nn.Module:
    try:
        model: nn.Module = auto.from_config(config)
    except ImportError as error:
        _refuse(model_type, f"it needs a package that is not installed ({_first_line(error)})")
    except Exception as error:
        _refuse(model_type, f"it does not build at this size ({type(error).__name__}: {_first_line(error)})")
    return model


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _refuse(model_type: str, why: str) -> NoReturn:
    raise TrainstabError(f"hf:{model_type} is not supported: {why}")

