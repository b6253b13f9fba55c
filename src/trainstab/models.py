"""The model contract: which model a sweep trains, built at a requested size.

A model is named by a string:

- ``reference``: the paper's transformer (:mod:`trainstab.reference`), with
  every ModelConfig switch.
- ``hf:<model_type>``: a tiny causal LM of any transformers architecture,
  built from a config alone (no weights downloaded; needs the ``hf`` extra).
- ``package.module:callable``: the user's factory. It is called as
  ``factory(size, **options)`` with a :class:`ModelSize` and the keyword
  options written in the name (``mypkg.models:build[qk_norm=false]``, see
  :mod:`trainstab.model_names`; an ``hf:`` model's options are config
  fields). It returns an ``nn.Module``
  mapping LongTensor (B, T) to logits (B, T, V), or to an object with
  ``.logits``. Its attention logits are captured automatically from every
  common attention implementation (:mod:`trainstab.capture` lists them) or
  reported with :func:`trainstab.record_attention_logits`.

Anything but ``reference`` is trained as a :class:`FunctionalStack`: one
template module, its parameters stacked M times, called once per member.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from trainstab.capture import capture_attention, regroup_by_member
from trainstab.config import ModelConfig
from trainstab.errors import TrainstabError
from trainstab.model_names import split_model_name
from trainstab.reference import ReferenceTransformer
from trainstab.torch_state import isolated_torch_state

REFERENCE = "reference"
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class ModelSize:
    """The size a factory is asked to build."""

    width: int  # d_model
    depth: int  # transformer blocks
    heads: int  # attention heads (width divides by heads)
    vocab_size: int  # V; logits must be (B, T, V)
    context_length: int  # the longest T the model will see

    @classmethod
    def of(cls, config: ModelConfig) -> ModelSize:
        """The size fields of a model config."""
        return cls(config.width, config.depth, config.heads, config.vocab_size, config.context_length)


Factory = Callable[[ModelSize], nn.Module]


def resolve_factory(name: str) -> Factory:
    """The factory a model name (with any ``[key=value]`` options) stands for; raises :class:`TrainstabError`."""
    base, options = split_model_name(name)
    if base.startswith(HF_PREFIX):
        model_type = base[len(HF_PREFIX) :]
        return lambda size: _hf_model(model_type, size, options)
    module_name, sep, attribute = base.partition(":")
    if not sep or not module_name or not attribute:
        raise TrainstabError(
            f"model {name!r} is not 'reference', 'hf:<model_type>' or 'package.module:callable' (with optional "
            "[key=value,...] options); name a factory such as mypkg.models:build_model"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise TrainstabError(
            f"cannot import {module_name!r} for model {name!r} ({error}); install it or add its folder to PYTHONPATH"
        ) from None
    except (Exception, SystemExit) as error:  # a SyntaxError in the module, or code that fails at import
        raise TrainstabError(
            f"importing {module_name!r} for model {name!r} raised {type(error).__name__}: {error}; fix that module"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise TrainstabError(
            f"{module_name} has no callable {attribute!r}; model {name!r} must name a factory function"
        )
    if not options:
        return factory  # type: ignore[no-any-return]
    _check_keywords(factory, options, name)
    return functools.partial(factory, **options)


def _check_keywords(factory: Callable[..., Any], options: dict[str, Any], name: str) -> None:
    """Refuse options the factory cannot take, naming those it can (before any training starts)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return  # no signature to read (a C callable): the call itself reports a bad keyword
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    keywords = [
        p.name
        for i, p in enumerate(parameters.values())
        if i > 0 and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [key for key in options if key not in keywords]
    if unknown:
        accepted = ", ".join(keywords) if keywords else "none (it takes only the size)"
        raise TrainstabError(
            f"model {name!r}: the factory takes no keyword option {', '.join(map(repr, unknown))}; its keyword "
            f"options are: {accepted}. Add the argument to the factory, e.g. def build(size, qk_norm=True)"
        )


def _hf_model(model_type: str, size: ModelSize, options: dict[str, Any]) -> nn.Module:
    """A tiny transformers causal LM of ``model_type`` from its config (no download).

    ``options`` are config fields set after the sizes, so they win (``hf:llama[tie_word_embeddings=true]``).
    """
    try:
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise TrainstabError(
            f"model 'hf:{model_type}' needs transformers; install it with pip install 'trainstab[hf]'"
        ) from None
    try:
        config = AutoConfig.for_model(model_type)
    except ValueError:
        raise TrainstabError(f"transformers has no model type {model_type!r}; use e.g. hf:gpt2 or hf:llama") from None
    sizes = {
        ("hidden_size", "n_embd", "d_model"): size.width,
        ("num_hidden_layers", "n_layer", "num_layers"): size.depth,
        ("num_attention_heads", "n_head", "num_heads"): size.heads,
        ("num_key_value_heads",): size.heads,
        ("head_dim",): size.width // size.heads,
        ("intermediate_size", "n_inner", "ffn_dim"): 4 * size.width,
        ("max_position_embeddings", "n_positions", "n_ctx"): size.context_length,
        ("vocab_size",): size.vocab_size,
    }
    for names, value in sizes.items():
        for attribute in names:
            if hasattr(config, attribute):
                setattr(config, attribute, value)
    # No dropout: the proxy measures the architecture's dynamics, not regularisation noise.
    for attribute in dir(config):
        if ("dropout" in attribute or attribute.endswith("_pdrop")) and isinstance(
            getattr(config, attribute, None), float
        ):
            setattr(config, attribute, 0.0)
    for key, value in options.items():
        if key not in config.to_dict():
            raise TrainstabError(
                f"model 'hf:{model_type}': its config ({type(config).__name__}) has no field {key!r}; "
                "options of an hf: model are config fields, e.g. hf:llama[tie_word_embeddings=true]"
            )
        setattr(config, key, value)
    # transformers' own choice of attention: SDPA where the architecture supports it,
    # eager where it does not (Gemma 2, whose attention logits are soft-capped).
    model: nn.Module = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    return model


def build_template(name: str, size: ModelSize, seed: int) -> nn.Module:
    """Call the factory of ``name`` under ``seed``; its failures become clear errors."""
    factory = resolve_factory(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            module = factory(size)
        except TrainstabError:
            raise
        except (Exception, SystemExit) as error:  # a factory that calls sys.exit is a broken factory, not an exit
            raise TrainstabError(
                f"model factory {name!r} raised {type(error).__name__}: {error} (asked for {size}); "
                "fix the factory or the size options"
            ) from None
    if not isinstance(module, nn.Module):
        raise TrainstabError(f"model factory {name!r} returned {type(module).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in module.parameters()):
        raise TrainstabError(f"model {name!r} has no trainable parameters")
    devices = sorted({p.device.type for p in module.parameters()} - {"cpu"})
    if devices:
        raise TrainstabError(
            f"model factory {name!r} returned parameters on {', '.join(devices)}; return a model on the CPU with real "
            "tensors (trainstab moves nothing; a 'meta' model has no weights to train)"
        )
    return module


def _logits_of(output: Any, name: str) -> torch.Tensor:
    """The logits tensor of a model's output (a tensor or an object with .logits)."""
    logits = getattr(output, "logits", output)
    if not isinstance(logits, torch.Tensor):
        raise TrainstabError(
            f"model {name!r} returned {type(output).__name__}; forward must return logits (B, T, V) "
            "or an object with .logits"
        )
    return logits


class FunctionalStack(nn.Module):
    """M copies of any model: stacked parameters (M, ...), one call per member.

    Each member is the template module run with its own slice of the stacked
    parameters (``torch.func.functional_call``), so a member's numbers do not
    depend on the others. Buffers are shared from the template.
    """

    def __init__(self, template: nn.Module, members: int, name: str, size: ModelSize) -> None:
        super().__init__()
        object.__setattr__(self, "template", template)  # not a submodule: only the stack is trained
        template.train()  # the sweep trains it (and a module in eval mode may take fused paths nothing sees)
        self.model_name = name
        self.size = size
        named = [(n, p) for n, p in template.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        # Keyed by the template's own names ("." is not allowed in a key, "/" is), so
        # per-parameter metrics read as the user's layer names.
        self.stacked = nn.ParameterDict(
            {
                n.replace(".", "/"): nn.Parameter(p.detach().unsqueeze(0).repeat(members, *([1] * p.dim())))
                for n, p in named
            }
        )

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> logits (M, B, T, V)."""
        template: nn.Module = self.__dict__["template"]
        stacked = {n: self.stacked[n.replace(".", "/")] for n in self.names}  # by key: ParameterDict sorts
        members = next(iter(stacked.values())).shape[0]
        with regroup_by_member(members):
            outputs = []
            for k in range(members):
                params = {n: p[k] for n, p in stacked.items()}
                outputs.append(_logits_of(functional_call(template, params, (idx,)), self.model_name))
        expected = (*idx.shape, self.size.vocab_size)
        if tuple(outputs[0].shape) != expected:
            raise TrainstabError(
                f"model {self.model_name!r} returned logits of shape {tuple(outputs[0].shape)} for input "
                f"{tuple(idx.shape)}; expected (B, T, V) = {expected} with V = vocab_size"
            )
        if not outputs[0].is_floating_point():
            raise TrainstabError(
                f"model {self.model_name!r} returned logits of dtype {outputs[0].dtype}; logits must be floating "
                "point (the output of a Linear head, not argmax or token ids)"
            )
        return torch.stack(outputs).float()  # (M, B, T, V)


def build_stack(
    name: str, config: ModelConfig, members: int, seed: int, device: str = "cpu"
) -> tuple[nn.Module, dict[str, float]]:
    """The stacked model a sweep trains, on ``device``, and its per-parameter LR multipliers.

    Every model is initialised on the CPU, then moved: the same seed gives the same weights on every device.
    """
    if name == REFERENCE:
        reference = ReferenceTransformer(config, members=members, seed=seed).to(device)
        return reference, reference.lr_multipliers()
    size = ModelSize.of(config)
    template = build_template(name, size, seed).to(device)  # its buffers serve every member: on the device too
    stack = FunctionalStack(template, members, name, size)
    return stack, {n: 1.0 for n, _ in stack.named_parameters()}


NO_ATTENTION_HINT = (
    "no attention logits were captured. trainstab sees scaled_dot_product_attention, nn.MultiheadAttention, "
    "torch's Transformer layers, transformers' attention and hand-written softmax(q @ k^T) attention; "
    "anything else (a custom kernel, sigmoid attention) must report its pre-softmax logits with "
    "trainstab.record_attention_logits(logits) in its forward"
)


@functools.cache
def check_model(name: str, config: ModelConfig, seed: int) -> None:
    """Build ``name`` once and run one tiny forward, so a broken model fails before training (isolated).

    See :func:`_check_model`; the forward cannot leave torch's global state changed for what runs next.
    """
    with isolated_torch_state():
        _check_model(name, config, seed)


def _check_model(name: str, config: ModelConfig, seed: int) -> None:
    """Build ``name`` once and run one tiny forward, so a broken model fails before training.

    Memoised (a failure is not, so it is raised every time): a CLI preflight
    followed by run_sweep's, or a fuzz search training hundreds of points of
    one model, check it once.

    Raises :class:`TrainstabError` when the factory fails, the output has the
    wrong shape, or no attention logit can be observed.
    """
    model, _ = build_stack(name, config, members=1, seed=seed)
    idx = torch.zeros(1, config.context_length, dtype=torch.long)  # full length: a short block_size fails here
    with torch.enable_grad(), capture_attention() as records:  # with gradients, as training calls it
        try:
            logits = model(idx)
        except TrainstabError:
            raise
        except (Exception, SystemExit) as error:
            raise TrainstabError(
                f"model {name!r} failed on a (1, {idx.shape[1]}) batch of token ids: {type(error).__name__}: {error} "
                f"(the sweep trains on sequences of context_length={config.context_length} tokens, so the model "
                "must take sequences of that length: check a hard-coded block_size or max_position_embeddings, "
                "or set context_length with --set)"
            ) from None
    if tuple(logits.shape[1:]) != (*idx.shape, config.vocab_size):
        raise TrainstabError(
            f"model {name!r} returned logits of shape {tuple(logits.shape[1:])}; expected (B, T, V) = "
            f"{(*idx.shape, config.vocab_size)}"
        )
    if not logits.requires_grad:
        raise TrainstabError(
            f"model {name!r} returned logits without a gradient: its forward turns gradients off (torch.no_grad, "
            "detach or set_grad_enabled(False)); training needs them"
        )
    if not bool(torch.isfinite(logits).all()):
        raise TrainstabError(
            f"model {name!r} returns non-finite logits at initialisation, before any training; check its init "
            "and forward (a run would be reported as diverged at step 0)"
        )
    if not records:
        raise TrainstabError(f"model {name!r}: {NO_ATTENTION_HINT}")
