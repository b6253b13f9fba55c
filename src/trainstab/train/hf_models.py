"""``hf:<model_type>``: a tiny causal LM of any transformers architecture, built from its config alone.

No weights are downloaded. The config is constructed with the requested sizes,
so the fields it derives from them follow (falcon's ``head_dim`` and
``ffn_hidden_size``, a hybrid's ``layer_types``); every other integer field is
sized by what its name says it is (:func:`sized_fields`). The model is then
built on the meta device and refused, before it costs memory, unless it has
the requested depth and no matrix wider than :func:`widest_allowed` (a field
no rule maps would leave a layer at its full size). Last, one forward shows
that it runs at this size and has attention trainstab can capture; that it is
causal is :func:`trainstab.train.models.check_model`'s rule, as for every model.

A type that does not build this way is refused with one line naming why.
:data:`REFUSED` lists the few whose refusal no generic step can word.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import TYPE_CHECKING, Any, NoReturn

import torch
from torch import nn

from trainstab.core.errors import TrainstabError
from trainstab.train.capture import capture_attention, is_capturing

if TYPE_CHECKING:
    from trainstab.train.models import ModelSize

#: The sizes trainstab asks for, by the exact names configs give them.
WIDTH = ("hidden_size", "n_embd", "d_model", "emb_dim")
DEPTH = (
    *("num_hidden_layers", "n_layer", "n_layers", "num_layers"),
    *("decoder_layers", "encoder_layers", "num_decoder_layers", "num_encoder_layers"),
)
HEADS = (
    *("num_attention_heads", "n_head", "n_heads", "num_heads", "attention_heads"),
    *("decoder_attention_heads", "encoder_attention_heads", "num_decoder_attention_heads"),
    "num_encoder_attention_heads",
)
#: Key/value heads: as many as the query heads (trainstab's ``heads`` is both).
KV_HEADS = ("num_key_value_heads", "num_kv_heads", "kv_n_heads", "multi_query_group_num", "num_query_groups")
HEAD_DIM = ("head_dim",)  # width // heads
#: A dense MLP: 4 x width, as in every model trainstab trains (ModelConfig.mlp_ratio).
DENSE_MLP = (
    *("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "decoder_ffn_dim", "encoder_ffn_dim"),
    *("d_ff", "dff", "dim_ff", "d_inner", "feed_forward_size", "intermediate_size_mlp"),
)
POSITIONS = ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "max_target_positions", "rel_extent")
#: The first layer of a kind (after dense ones, the first attention or MoE layer): at most depth - 1, so the
#: tiny model has it.
LEADING_LAYERS = re.compile(r"^first_k_dense_replace$|^num_dense_layers$|^moe_layer_start_index$|_layer_offset$")

#: A per-head size: scales with the head dimension (MLA's rope and nope parts, an SSM head, a rotary slice).
PER_HEAD = re.compile(r"head_dim|head_size|d_head|dim_head|headdim|kv_channels|rotary_dim")
#: A count of heads (linear-attention, SSM, indexer heads) or of head groups: scales with the heads.
HEAD_COUNT = re.compile(r"heads|n_groups|ngroups")
#: A width: an expert's or a shared MLP, a low-rank projection, a factorised embedding, an SSM's inner and state
#: sizes scale with the width (rounded to a multiple of 8: grouped expert matmuls need 16-byte strides).
WIDE = re.compile(
    r"intermediate|ffn|inner|hidden_size|hidden_dim|rank|_width$|embed_dim|embedding_dim|embedding_size|"
    r"d_ssm|proj_dim|mid_dim|d_state|state_size"
)
#: Names with a width's word that are not a width: rounding multiples, ratios, counts, windows, token ids.
NOT_A_SIZE = re.compile(r"multiple|round|factor|ratio|top_?k|^num_|^n_|chunk|window|kernel|conv|token|layer")
#: Another table indexed by ids (per-layer token embeddings, n-grams, hashed bytes): no bigger than the vocabulary.
VOCABULARY = re.compile("vocab")

#: Types no generic step refuses in words that say why (transformers 5).
REFUSED = {
    "xmod": "it needs a language adapter chosen per input (set_default_language), which a token-only model lacks",
}


def hf_model(model_type: str, size: ModelSize, options: dict[str, Any]) -> nn.Module:
    """A tiny transformers causal LM of ``model_type`` at ``size`` (no download); raises :class:`TrainstabError`.

    ``options`` are config fields given after the sizes, so they win (``hf:llama[tie_word_embeddings=true]``).
    """
    try:
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as causal_lms
    except ImportError:
        raise TrainstabError(
            f"model 'hf:{model_type}' needs transformers; install it with pip install 'trainstab[hf]'"
        ) from None
    # 1. A type transformers knows, with a causal LM that is a language model alone.
    try:
        default = AutoConfig.for_model(model_type)
    except ValueError:
        raise TrainstabError(f"transformers has no model type {model_type!r}; use e.g. hf:gpt2 or hf:llama") from None
    except Exception as error:  # a config class whose own defaults do not validate
        _refuse(model_type, f"its default config does not validate ({_reason(error)})")
    if model_type not in causal_lms:
        _refuse(model_type, "transformers has no causal LM (AutoModelForCausalLM) for it")
    if model_type in REFUSED:
        _refuse(model_type, REFUSED[model_type])
    towers = [name for name in default.sub_configs if name != "text_config" and re.search("vision|audio|vq", name)]
    text_type = getattr(getattr(default, "text_config", None), "model_type", model_type)
    if towers or text_type != model_type:
        use = f"; use its language model, hf:{text_type}" if text_type in causal_lms and text_type != model_type else ""
        _refuse(model_type, f"it wraps a language model with other inputs ({', '.join(towers) or 'text_config'}){use}")
    fields = default.to_dict()
    unknown = [key for key in options if key not in fields]
    if unknown:
        raise TrainstabError(
            f"model 'hf:{model_type}': its config ({type(default).__name__}) has no field {unknown[0]!r}; "
            "options of an hf: model are config fields, e.g. hf:llama[tie_word_embeddings=true]"
        )
    # 2. Its first `depth` layers; a hybrid whose first layers hold no attention (qwen3_5: three linear-attention
    #    layers before each full one) takes the earliest window of its layer pattern holding the most kinds.
    build = functools.partial(_build, AutoConfig, AutoModelForCausalLM, model_type, options, size)
    start = _window(fields, size.depth)
    try:
        model, attends = build(sized_fields(fields, size))
    except TrainstabError:
        if not start:
            raise
        attends = False
    if not attends and start:
        model, attends = build(sized_fields(fields, size, start))
    if not attends:
        _refuse(
            model_type,
            f"no attention logits at depth {size.depth}: no softmax attention there (a recurrent or state-space "
            "model) or one trainstab's capture does not trace; trainstab's checks read attention logits",
        )
    return model


def sized_fields(fields: dict[str, Any], size: ModelSize, start: int = 0) -> dict[str, Any]:
    """The constructor arguments that make a config of default ``fields`` the requested ``size``.

    Per-layer fields keep the layers ``start`` .. ``start + depth`` of the full-size model.
    """
    width0 = next((fields[name] for name in WIDTH if isinstance(fields.get(name), int)), None)
    heads0 = next((fields[name] for name in HEADS if isinstance(fields.get(name), int)), None)
    layers0 = next((fields[name] for name in DEPTH if isinstance(fields.get(name), int)), 0)
    head_dim0 = fields.get("head_dim") or (width0 // heads0 if width0 and heads0 else None)
    scale = {"width": size.width / width0 if width0 else None, "heads": size.heads / heads0 if heads0 else None}
    scale["head"] = size.width // size.heads / head_dim0 if head_dim0 else None
    window = range(start, start + size.depth)
    patterns = _patterns(fields)
    # Trained, never generating (no cache), and causal (an encoder's LM head is a decoder's with is_decoder).
    sized: dict[str, Any] = {"use_cache": False, "is_decoder": True}
    sized |= {name: True for name in ("causal", "is_causal") if isinstance(fields.get(name), bool)}
    for name, value in fields.items():
        new: Any = value
        if isinstance(value, dict) and isinstance(value.get("model_type"), str):  # a nested config (dbrx's)
            new = {k: v for k, v in sized_fields(value, size).items() if k in value}
        elif name == "per_layer_config" and isinstance(value, dict):  # {"05": {"head_dim": 512}}: layers in window
            new = {
                f"{int(k) - start:0{len(k)}d}": {f: _size(f, v, size, scale) for f, v in overrides.items()}
                for k, overrides in value.items()
                if int(k) in window
            }
        elif isinstance(value, list) and _is_layer_index(name, value, layers0):  # moe_layers, full_attn_idxs
            new = [i - start for i in value if i in window]
        elif name in patterns:
            new = patterns[name][start : start + size.depth]
        elif isinstance(value, list):
            per_layer = value[start : start + size.depth] if len(value) == layers0 else value
            new = [_size(name, v, size, scale) for v in per_layer]  # layer_types; gemma3n's MLP per layer
        else:
            new = _size(name, value, size, scale)
        if new != value:
            sized[name] = new
    return sized


def _is_layer_index(name: str, value: list[Any], layers: int) -> bool:
    """Whether ``value`` lists layers by index (ascending), not a value per layer."""
    ints = all(isinstance(i, int) and not isinstance(i, bool) for i in value)
    ascending = ints and all(a < b for a, b in itertools.pairwise(value)) and max(value, default=0) < layers
    return ascending and bool(re.search("layer|idx|_ids", name))


def _size(name: str, value: Any, size: ModelSize, scale: dict[str, float | None]) -> Any:
    """The value of one field at ``size``: ``value`` itself when no rule applies."""
    if isinstance(value, float) and ("dropout" in name or name.endswith("_pdrop")):
        return 0.0  # no dropout: the proxy measures the architecture's dynamics, not regularisation noise
    exact = {WIDTH: size.width, DEPTH: size.depth, HEADS: size.heads, KV_HEADS: size.heads, DENSE_MLP: 4 * size.width}
    exact |= {HEAD_DIM: size.width // size.heads, POSITIONS: size.context_length, ("vocab_size",): size.vocab_size}
    for names, new in exact.items():
        if name in names and (value is None or isinstance(value, int)):  # None: derived from the others
            return new
    if not isinstance(value, int) or isinstance(value, bool):
        return value
    # A special token past the vocabulary: its last id (only generation reads them; validators want an int).
    if name.endswith(("token_id", "token_index")):
        return min(value, size.vocab_size - 1)
    if VOCABULARY.search(name):
        return min(value, size.vocab_size)
    if LEADING_LAYERS.search(name):
        return min(value, size.depth - 1)
    if PER_HEAD.search(name) and scale["head"]:
        return max(2, 2 * round(value * scale["head"] / 2))  # even: rotary embeddings halve it
    if HEAD_COUNT.search(name) and scale["heads"]:
        return max(1, round(value * scale["heads"]))
    if WIDE.search(name) and not NOT_A_SIZE.search(name) and scale["width"] and value > 0:
        return max(8, 8 * round(value * scale["width"] / 8))
    return value


def widest_allowed(size: ModelSize) -> int:
    """The widest a matrix of a model at ``size`` may be: its vocabulary, or 8 x width (a gated MLP, fused)."""
    return max(size.vocab_size, 8 * size.width)


def _build(
    auto_config: Any, auto_model: Any, model_type: str, options: dict[str, Any], size: ModelSize, sized: dict[str, Any]
) -> tuple[nn.Module, bool]:
    """The model of ``sized`` fields and ``options``, its depth and widths checked on the meta device first; and
    whether it attends."""
    with torch.device("meta"):
        config, shell = _config_and_model(auto_config, auto_model, model_type, {**sized, **options})
        # A position table counted from the padding id + 1 (roberta's) needs those rows too.
        offset = max(
            (
                m.padding_idx + 1
                for n, m in shell.named_modules()
                if isinstance(m, nn.Embedding) and "position" in n and m.padding_idx is not None
            ),
            default=0,
        )
        if offset:
            sized = {**sized, **{n: v + offset for n, v in sized.items() if n in POSITIONS}}
            config, shell = _config_and_model(auto_config, auto_model, model_type, {**sized, **options})
    # The depth asked for: a list of that many blocks, and as many layers by the config's count (a looped
    # model, hrm_text or dory, derives its layers from fields no rule sizes).
    lists = {name: len(m) for name, m in shell.named_modules() if isinstance(m, nn.ModuleList)}
    if size.depth not in lists.values():
        layers = ", ".join(f"{name} has {n}" for name, n in lists.items()) or "no list of layers"
        _refuse(model_type, f"at depth {size.depth} it builds no list of {size.depth} layers ({layers})")
    try:
        counted = config.num_hidden_layers
    except Exception:  # a config without the count, or with one per layer group
        counted = size.depth
    if counted != size.depth:
        _refuse(model_type, f"at depth {size.depth} its config counts {counted} layers (it repeats or derives them)")
    limit = widest_allowed(size)
    for name, parameter in shell.named_parameters():
        if any(dim > limit for dim in parameter.shape[-2:]):  # leading dims (experts) are not widths
            _refuse(
                model_type,
                f"at width {size.width} its {name} is {tuple(parameter.shape)}, wider than {limit} "
                "(the vocabulary or 8 x width): its config has a size trainstab does not scale",
            )
    # transformers' own choice of attention: SDPA where the architecture supports it,
    # eager where it does not (Gemma 2, whose attention logits are soft-capped).
    model: nn.Module = auto_model.from_config(config)
    return model, _check_forward(model, model_type, size)


def _config_and_model(
    auto_config: Any, auto_model: Any, model_type: str, kwargs: dict[str, Any]
) -> tuple[Any, nn.Module]:
    """The config of ``kwargs`` and its model (on the device in use); refused in words that say which failed."""
    try:
        config = auto_config.for_model(model_type, **kwargs)
    except Exception as error:
        _refuse(model_type, f"its config refuses these sizes ({_reason(error)})")
    try:
        return config, auto_model.from_config(config)
    except ImportError as error:
        _refuse(model_type, f"it needs a package that is not installed ({_reason(error)})")
    except Exception as error:
        switches = {key: value for key, value in kwargs.items() if isinstance(value, bool)}  # is_decoder, ...
        try:
            auto_model.from_config(auto_config.for_model(model_type, **switches))
        except Exception as default_error:
            _refuse(model_type, f"transformers cannot build it from its own default config ({_reason(default_error)})")
        _refuse(model_type, f"it does not build at this size ({_reason(error)})")


def _check_forward(model: nn.Module, model_type: str, size: ModelSize) -> bool:
    """Run one sequence: it runs at this size and returns (1, T, V) logits; and whether attention was seen.

    Causality is not checked here: :func:`trainstab.train.models.check_model` checks every model's, as training runs it.
    Without gradients and under a forked RNG, so the caller's random stream is the one it would be without.
    Inside a capture already in progress (it does not nest) only the first two are checked.
    """
    idx = torch.randint(0, size.vocab_size, (1, size.context_length), generator=torch.Generator().manual_seed(0))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            if is_capturing():
                logits, attends = model(idx).logits, True
            else:
                with capture_attention() as records:
                    logits = model(idx).logits
                attends = bool(records)
        except Exception as error:
            _refuse(model_type, f"its forward fails at this size ({_reason(error)})")
    if tuple(logits.shape) != (*idx.shape, size.vocab_size):
        _refuse(model_type, f"its logits are {tuple(logits.shape)} for {tuple(idx.shape)} token ids")
    return attends


def _window(fields: dict[str, Any], depth: int) -> int:
    """The first layer of the earliest ``depth`` layers of the full-size pattern holding the most layer kinds."""
    patterns = _patterns(fields)
    if not patterns:
        return 0
    kinds = list(zip(*patterns.values(), strict=True))
    counts = [len(set(kinds[start : start + depth])) for start in range(len(kinds) - depth + 1)]
    return counts.index(max(counts)) if counts else 0


def _patterns(fields: dict[str, Any]) -> dict[str, list[str]]:
    """The kind of each layer of the full-size model, per field: ``layer_types``, ``mlp_layer_types``, and
    ``block_types``, a cycle (recurrent_gemma's recurrent, recurrent, attention) repeated over the layers."""
    layers = next((fields[name] for name in DEPTH if isinstance(fields.get(name), int)), 0)
    patterns = {}
    for name, value in fields.items():
        strings = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        if strings and (len(value) == layers or (name.endswith("types") and len(value) < layers)):
            patterns[name] = [value[i % len(value)] for i in range(layers)]
    return patterns


def _reason(error: BaseException) -> str:
    """The first line of what went wrong (a validator's cause rather than its wrapper)."""
    cause = error.__cause__ or error
    line = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
    return f"{type(cause).__name__}: {line}" if line else type(cause).__name__


def _refuse(model_type: str, why: str) -> NoReturn:
    raise TrainstabError(f"hf:{model_type} is not supported: {why}")
