"""The model contract: which model a sweep trains, built at a requested size.

A model is named by a string:

- ``reference``: the paper's transformer (:mod:`trainstab.train.reference`), with
  every ModelConfig switch.
- ``hf:<model_type>``: a tiny causal LM of any transformers architecture,
  built from a config alone (no weights downloaded; needs the ``hf`` extra).
- ``package.module:callable``: the user's factory. It is called as
  ``factory(size, **options)`` with a :class:`ModelSize` and the keyword
  options written in the name (``mypkg.models:build[qk_norm=false]``, see
  :mod:`trainstab.core.model_names`; an ``hf:`` model's options are config
  fields). It returns an ``nn.Module``
  mapping LongTensor (B, T) to logits (B, T, V), or to an object with
  ``.logits``. Its attention logits are captured automatically from every
  common attention implementation (:mod:`trainstab.train.capture` lists them) or
  reported with :func:`trainstab.record_attention_logits`.

Anything but ``reference`` is trained as a :class:`FunctionalStack`: one
template module, its parameters stacked M times, called once per member.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from trainstab.core.config import ModelConfig, TrainConfig
from trainstab.core.crash import exception_name, first_line, user_location
from trainstab.core.errors import TrainstabError
from trainstab.core.model_names import split_model_name
from trainstab.train.capture import capture_attention, regroup_by_member
from trainstab.train.flex_emulation import flex_attention_on_cpu
from trainstab.train.hf_models import hf_model
from trainstab.train.reference import ReferenceTransformer
from trainstab.train.torch_state import isolated_torch_state

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
        return lambda size: hf_model(model_type, size, options)
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
    _check_float32(name, module)
    return module


def _check_float32(name: str, module: nn.Module) -> None:
    """Refuse trainable parameters that are not float32, before any training.

    They are the optimizer's master weights, which trainstab keeps in float32 (bf16 compute is autocast,
    ``train.precision``). Refused rather than converted: bf16 or fp16 weights round away small updates, so the
    model the user built and a float32 copy of it are not equally stable, and a verdict on the copy would be
    read as one on the model.
    """
    other = [(n, p.dtype) for n, p in module.named_parameters() if p.requires_grad and p.dtype != torch.float32]
    if other:
        first = other[0][0]
        kinds = ", ".join(sorted({str(d).removeprefix("torch.") for _, d in other}))
        raise TrainstabError(
            f"model {name!r} has {kinds} parameters ({len(other)}, the first {first}); trainstab trains float32 "
            "parameters (the optimizer's master weights): return the model in float32 (model.float()), and for "
            "bf16 compute use --precision bf16 (autocast)"
        )


def _logits_of(output: Any, name: str) -> torch.Tensor:
    """The logits tensor of a model's output (a tensor or an object with .logits)."""
    logits = getattr(output, "logits", output)
    if isinstance(logits, tuple | list) and logits and isinstance(logits[0], torch.Tensor):
        raise TrainstabError(
            f"model {name!r} returned a {type(output).__name__} of {len(logits)} (as nanoGPT's (logits, loss)); "
            "forward must return the logits (B, T, V) alone, or an object with .logits: wrap it, e.g. "
            "'logits, _ = gpt(idx, targets=idx.contiguous())' (recipes/nanogpt_models.py)"
        )
    if not isinstance(logits, torch.Tensor):
        raise TrainstabError(
            f"model {name!r} returned {type(output).__name__}; forward must return logits (B, T, V) "
            "or an object with .logits"
        )
    return logits


@contextlib.contextmanager
def _random_draws_from(seed: int, device: torch.device) -> Iterator[None]:
    """Run the body with torch's generator of the CPU (and of ``device``, a GPU) seeded; restore them after.

    Only those generators: ``torch.manual_seed`` would also queue a seed for a GPU not started yet.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


class FunctionalStack(nn.Module):
    """M copies of any model: stacked parameters (M, ...), one call per member.

    Each member is the template module run with its own slice of the stacked
    parameters (``torch.func.functional_call``), its own copy of the template's
    buffers (a buffer the forward updates, in place or by assignment, is that
    member's alone), and the random numbers it would draw alone (dropout): every
    member's call starts torch's generator from the same seed, one per call,
    drawn from ``seed``. So on the CPU a member's numbers are bit for bit those
    it has trained alone, whatever else is in its stack.
    """

    def __init__(self, template: nn.Module, members: int, name: str, size: ModelSize, seed: int = 0) -> None:
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
        # Where each of the template's buffers sits: (module, name in it), every name of a buffer registered twice.
        named_buffers = list(template.named_buffers(remove_duplicate=False))
        self.buffer_slots = [
            (template.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2]) for name, _ in named_buffers
        ]
        # Each member's own buffers, slot by slot: separate tensors, not slices of one stacked tensor (an in-place
        # update of a slice bumps the version that autograd checks on every slice); a buffer held in two slots
        # stays one tensor per member.
        self.member_buffers: list[list[torch.Tensor | None]] = []
        for _ in range(members):
            clones = {id(buffer): buffer.detach().clone() for _, buffer in named_buffers}
            self.member_buffers.append([clones[id(buffer)] for _, buffer in named_buffers])
        self.call_seeds = torch.Generator().manual_seed(seed)  # one seed per forward, shared by its members

    def _swap_buffers(self, buffers: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Put ``buffers`` into the template's slots; return what was there (a forward may have replaced it)."""
        previous: list[torch.Tensor | None] = []
        for (module, leaf), buffer in zip(self.buffer_slots, buffers, strict=True):
            previous.append(module._buffers[leaf])
            module._buffers[leaf] = buffer
        return previous

    def after_optimizer_step(self, kept: torch.Tensor | None) -> None:
        """Called by the engine after every step: when members diverged, keep only the buffers of those in ``kept``."""
        if kept is not None:
            self.member_buffers = [self.member_buffers[k] for k in kept.tolist()]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> logits (M, B, T, V)."""
        template: nn.Module = self.__dict__["template"]
        stacked = {n: self.stacked[n.replace(".", "/")] for n in self.names}  # by key: ParameterDict sorts
        members = next(iter(stacked.values())).shape[0]
        call_seed = int(torch.randint(2**62, (), generator=self.call_seeds))
        # flex_attention, where flex cannot train or be captured (the CPU), computed densely (flex_emulation).
        with regroup_by_member(members), flex_attention_on_cpu(idx.device):
            outputs = []
            for k in range(members):  # k: read by trainstab.core.crash to name the LR whose forward raised
                params = {n: p[k] for n, p in stacked.items()}
                template_buffers = self._swap_buffers(self.member_buffers[k])
                try:
                    with _random_draws_from(call_seed, idx.device):  # those member k would draw alone
                        output = functional_call(template, params, (idx,))
                finally:
                    self.member_buffers[k] = self._swap_buffers(template_buffers)  # as the forward left them
                outputs.append(_logits_of(output, self.model_name))
        expected = (*idx.shape, self.size.vocab_size)
        if tuple(outputs[0].shape) == (idx.shape[0], 1, self.size.vocab_size) and idx.shape[1] > 1:
            raise TrainstabError(
                f"model {self.model_name!r} returned the logits of the last position only, shape "
                f"{tuple(outputs[0].shape)}, for input {tuple(idx.shape)}: a generation path (nanoGPT computes "
                "every position only when given targets). trainstab needs every position's logits, (B, T, V): "
                "call that path, e.g. 'logits, _ = gpt(idx, targets=idx.contiguous())' (recipes/nanogpt_models.py)"
            )
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


#: The prefix of a :class:`FunctionalStack`'s parameters, whose keys write the model's "." as "/".
STACKED = "stacked."


def own_parameter_name(name: str) -> str:
    """A trained parameter's name as the model itself names it in ``named_parameters()``.

    A user or ``hf:`` model's stack keys its parameters ``stacked.blocks/1/attention/w_q/weight``; messages,
    baselines and ``ignore-params`` patterns use the model's own ``blocks.1.attention.w_q.weight``. The
    reference's names are its own already.
    """
    return name.removeprefix(STACKED).replace("/", ".") if name.startswith(STACKED) else name


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
    stack = FunctionalStack(template, members, name, size, seed)
    return stack, {n: 1.0 for n, _ in stack.named_parameters()}


NO_ATTENTION_HINT = (
    "no attention logits were captured. trainstab sees scaled_dot_product_attention, nn.MultiheadAttention, "
    "torch's Transformer layers, transformers' attention, flex_attention and hand-written softmax(q @ k^T) "
    "attention; "
    "anything else (a custom kernel, sigmoid attention) must report its pre-softmax logits with "
    "trainstab.record_attention_logits(logits) in its forward"
)


@functools.cache
def check_model(name: str, config: ModelConfig, seed: int, batch_size: int = TrainConfig.batch_size) -> None:
    """Build ``name`` once and run its first training step's forward and backward, so a broken model fails
    before training (isolated).

    See :func:`_check_model`; the step cannot leave torch's global state changed for what runs next.
    """
    with isolated_torch_state():
        _check_model(name, config, seed, batch_size)


def _check_model(name: str, config: ModelConfig, seed: int, batch_size: int) -> None:
    """Build ``name`` once and run a first training step on it, so a broken model fails before training.

    The batch is what training feeds (:meth:`trainstab.train.corpus.Corpus.batches`): ``batch_size`` sequences of
    ``context_length`` token ids, sliced out of windows one token longer, so not contiguous (nanoGPT's loss
    path calls ``.view`` on its ids and fails on them). A forward that fails is told apart once
    (:func:`_first_forward_failure`): on the slicing, on the length, or the model's own exception verbatim.

    Memoised (a failure is not, so it is raised every time): a CLI preflight
    followed by run_sweep's, or a fuzz search training hundreds of points of
    one model, check it once.

    Raises :class:`TrainstabError` when the factory fails, the forward or backward raises, the output has the
    wrong shape, or no attention logit can be observed.
    """
    model, _ = build_stack(name, config, members=1, seed=seed)
    windows = torch.randint(  # (B, T + 1) token ids: a training batch's windows, inputs and targets
        0, config.vocab_size, (batch_size, config.context_length + 1), generator=torch.Generator().manual_seed(seed)
    )
    idx = windows[:, :-1]  # (B, T), not contiguous, full length: a short block_size fails here
    with torch.enable_grad(), capture_attention() as records:  # with gradients, as training calls it
        try:
            logits = model(idx)
        except TrainstabError:
            raise
        except (Exception, SystemExit) as error:
            raise _first_forward_failure(name, model, idx, error) from None
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
    try:
        with flex_attention_on_cpu(idx.device):  # a checkpointed forward calls flex again in the backward
            logits.float().mean().backward()
    except (Exception, SystemExit) as error:
        raise TrainstabError(
            f"model {name!r} failed in the backward pass of its first training step: {_raised(error)}"
        ) from None
    _check_causal(name, model, idx, config.vocab_size, seed)


#: How far an earlier position's logits may move when a later token changes, relative to the spread of the
#: sequence's logits (the largest |logit - its position's mean over the vocabulary|, blind to a constant offset):
#: rounding, not a leak. Most models move by exactly 0; a mixture of experts computes each expert's tokens as one
#: matmul, so a later token routed elsewhere changes the matmul's shape and the rounding of earlier rows:
#: measured up to 2.6e-7 at the default size (seeds 0-2: kolibri1, minimax_m3_vl_text, minimax_m2, deepseek_v3,
#: lara_mini) and 6.7e-7 at width 128, depth 4 (seed 0: kolibri1, minimax_m3_vl_text, minimax_m2, laguna, axk1,
#: qwen3_next, qwen2_moe, ...). A leak moves them by 3e-4 (hf:bert as an encoder, xlnet) to 3e-2 (a bidirectional
#: mask) and 0.3 (a mask one position too wide).
CAUSAL_TOLERANCE = 1e-5
#: The standard deviation of the seeded normal values the causality check gives a parameter whose entries are all
#: smaller than :data:`CAUSAL_SMALL_PARAMETER`: a zero-initialised head or attention output projection
#: (modded-nanogpt zero-inits both) makes every path through it 0 at initialisation, and a LayerScale or SkipInit
#: scale of 1e-5 makes a leak behind it move the logits by ~3e-7 of their spread, under the tolerance; GPT-2's init.
CAUSAL_ZERO_INIT_STD = 0.02
#: Below this largest |entry| a parameter is a scale that starts (near) zero, not a weight: a trained-size weight's
#: entries reach several times its init std (0.02 and up), a LayerScale starts at 1e-1 to 1e-6. From 1e-3 up, a
#: leak behind it still moves the logits by ~3e-5 of their spread, above the tolerance.
CAUSAL_SMALL_PARAMETER = 1e-3


def _check_causal(name: str, model: nn.Module, idx: torch.Tensor, vocab_size: int, seed: int) -> None:
    """Refuse a model whose logits at a position change when a later token does (no causal mask, or a broken one).

    Its verdicts would mean nothing: a model that sees the token it predicts drives the loss towards zero.
    Sequence b of ``idx`` (B, T), a training-shaped batch of random token ids, gets the token at position t_b
    changed (the last position in the first, random others drawn from ``seed``); its logits at every position
    before t_b must stay the same, to within :data:`CAUSAL_TOLERANCE` of the spread of the sequence's logits.
    Bit for bit in nearly every model measured (the reference, the tests/ and stability_tests/ factories, the
    hf: types): with a causal mask a later key's attention weight is exactly 0 (exp of -inf, or of a large
    negative that underflows) and 0 x v adds nothing. Not in a mixture of experts, whose rounding depends on
    which tokens each expert gets (see the tolerance).

    ``model`` is the throwaway build of :func:`_check_model`: its parameters that are all (near) zero are given
    seeded values first (:data:`CAUSAL_ZERO_INIT_STD`), so a leak behind a zero-initialised layer shows.
    In training mode, as the model trains (a mask broken only in training is caught), both forwards drawing the
    same random numbers (dropout) from the same buffers. Without gradients: what the forward computes does not
    depend on them, and a forward with them is a training step to a model that counts its steps. A forward that
    fails is refused in one line, as the first forward's failures are. Costs two forwards of the batch.
    """
    rows, length = idx.shape
    if length < 2 or vocab_size < 2:
        return  # no earlier position to compare, or no other token to change to
    _fill_small_parameters(model, seed)
    generator = torch.Generator().manual_seed(seed)
    # (B,) the position changed in each sequence: the last in the first (a leak from the last token only), then
    # positions 1..T-1 in a random order, repeated when B > T - 1 (position 0 has no earlier one to compare).
    order = torch.randperm(length - 1, generator=generator) + 1
    changed = torch.cat([torch.tensor([length - 1]), order.repeat(-(-(rows - 1) // (length - 1)))])[:rows]
    base = idx.clone()  # (B, T), as training feeds it: a model may hard-code its batch size
    altered = base.clone()
    row = torch.arange(rows)
    shift = 1 + torch.randint(vocab_size - 1, (rows,), generator=generator)  # never 0 mod V: the token changes
    altered[row, changed] = (base[row, changed] + shift) % vocab_size
    try:
        before, after = _forwards_drawing_alike(model, [base, altered], seed)  # (B, T, V) each
    except TrainstabError:
        raise
    except (Exception, SystemExit) as error:  # a model that exits is broken, as in the first forward
        raise TrainstabError(
            f"model {name!r} failed on a forward without gradients (torch.no_grad, in training mode), a "
            f"{tuple(base.shape)} batch of token ids, as trainstab's causality check runs it: {_raised(error)}"
        ) from None
    leaks = _leaks(before, after, changed)
    if leaks is None:
        return
    token, position = leaks
    eval_causal = False
    module = _trained_module(model)
    module.eval()
    try:
        eval_before, eval_after = _forwards_drawing_alike(model, [base, altered], seed)
        eval_causal = _leaks(eval_before, eval_after, changed) is None
    except (Exception, SystemExit):  # the eval-mode forwards only refine the hint; the training leak is the finding
        pass
    finally:
        module.train()
    mode = " in training mode (model.train()), only in eval mode" if eval_causal else ""
    hint = "check what its forward does when self.training: " if eval_causal else ""
    raise TrainstabError(
        f"model {name!r} is not causal{mode}: changing the token at position {token} changed the logits at "
        f"position {position} (trainstab trains causal LMs: the logits at a position may depend only on the tokens "
        f"up to it); {hint}mask attention to later positions (is_causal=True, or a lower-triangular mask)"
    )


def _trained_module(model: nn.Module) -> nn.Module:
    """The module whose ``training`` flag the forward reads: a stack's template (not a submodule), else the model."""
    template = model.__dict__.get("template")
    return template if isinstance(template, nn.Module) else model


def _fill_small_parameters(model: nn.Module, seed: int) -> None:
    """Give each parameter of ``model`` whose entries are all below :data:`CAUSAL_SMALL_PARAMETER` (zeros, a small
    LayerScale) normal values of std :data:`CAUSAL_ZERO_INIT_STD`, drawn from ``seed``, in place (a stack's stacked
    (M, ...) copies, which its forward reads; not its template's). Causality is structural: no value makes a causal
    model leak, and these make a non-causal one's leak show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            floating = parameter.is_floating_point() and parameter.numel() > 0
            if floating and float(parameter.abs().amax()) < CAUSAL_SMALL_PARAMETER:
                values = torch.randn(parameter.shape, generator=generator) * CAUSAL_ZERO_INIT_STD
                parameter.copy_(values.to(parameter))


def _forwards_drawing_alike(model: nn.Module, batches: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """Member 0's logits (B, T, V) for each batch, every forward from the same buffers and random numbers."""
    stack = model if isinstance(model, FunctionalStack) else None
    seeds = stack.call_seeds.get_state() if stack else None
    buffers = stack.member_buffers if stack else []
    outputs = []
    for batch in batches:
        if stack and seeds is not None:
            stack.call_seeds.set_state(seeds)  # the same per-call seed, so the same dropout masks
            stack.member_buffers = [_copies(member) for member in buffers]  # a forward may update them
        torch.default_generator.manual_seed(seed)  # for a model drawing outside a stack's per-member seeding
        with torch.no_grad():
            outputs.append(model(batch)[0])
    if stack:
        stack.member_buffers = buffers
    return outputs


def _copies(buffers: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """A copy of one member's buffers; a tensor in two slots stays one tensor."""
    clones = {id(b): b.clone() for b in buffers if b is not None}
    return [None if b is None else clones[id(b)] for b in buffers]


def _leaks(before: torch.Tensor, after: torch.Tensor, changed: torch.Tensor) -> tuple[int, int] | None:
    """The earliest changed token whose sequence's logits moved before it, and the first position that moved.

    ``before``, ``after``: (R, T, V) logits; ``changed``: (R,) the position changed in each sequence.
    """
    length = before.shape[1]
    # (R,): rounding, per sequence, against the logits' spread: a constant offset (+1e4) would widen a bound
    # taken from |logit| past a real leak.
    spread = (before - before.mean(-1, keepdim=True)).abs().amax(dim=(1, 2))
    bound = CAUSAL_TOLERANCE * spread
    moved = (before - after).abs().amax(-1) > bound[:, None]  # (R, T)
    moved &= torch.arange(length) < changed[:, None]  # only positions before the changed token
    leaking = [int(r) for r in moved.any(-1).nonzero().flatten()]
    if not leaking:
        return None
    first = min(leaking, key=lambda r: int(changed[r]))
    return int(changed[first]), int(moved[first].nonzero()[0])


def _raised(error: BaseException) -> str:
    """The model's exception in one line: type, first line of the message, the user's file and line."""
    location = user_location(error.__traceback__)
    return f"{exception_name(error)}: {first_line(error)}" + (f" ({location})" if location else "")


def _runs(model: nn.Module, idx: torch.Tensor) -> bool:
    """Whether the model's forward takes ``idx`` (with gradients, as training calls it)."""
    try:
        with torch.enable_grad():
            model(idx)
    except (Exception, SystemExit):
        return False
    return True


def _first_forward_failure(name: str, model: nn.Module, idx: torch.Tensor, error: BaseException) -> TrainstabError:
    """Why the first forward on ``idx`` (B, T) failed, with a hint only where one applies.

    1. The same ids made contiguous pass: the model needs contiguous input.
    2. Shorter sequences pass: the model has a length limit below the context length.
    3. An op with no kernel on this device (flash or varlen attention on the CPU): named in one line.
    4. Otherwise the model's own exception, verbatim (an assertion about a mask).
    """
    batch, length = idx.shape
    shape = f"({batch}, {length})"
    if _runs(model, idx.contiguous()):
        return TrainstabError(
            f"model {name!r} fails on a non-contiguous batch of token ids, as training passes them (each {shape} "
            f"batch is sliced out of windows of {length + 1} tokens): {_raised(error)}; make its forward take any "
            "strides: .reshape instead of .view, or idx.contiguous() first"
        )
    if any(_runs(model, idx[:, :shorter]) for shorter in dict.fromkeys((length // 2, 8, 1)) if 0 < shorter < length):
        return TrainstabError(
            f"model {name!r} failed on a {shape} batch of token ids, but takes shorter sequences: {_raised(error)} "
            f"(the sweep trains on sequences of context_length={length} tokens, so the model must take sequences "
            "of that length: check a hard-coded block_size or max_position_embeddings, or set context_length "
            "with --set)"
        )
    missing = _NO_KERNEL.search(str(error))
    if missing is not None:
        op, backend = missing.groups()
        location = user_location(error.__traceback__)
        attention = any(word in op for word in ("flash", "varlen", "attention"))
        advice = (
            "flash and varlen attention kernels are CUDA-only: write the attention with "
            "scaled_dot_product_attention or flex_attention (torchtitan: attn_backend='flex'), or gate on a GPU "
            "with --device cuda"
            if attention and backend == "CPU"
            else f"run the model where {op} has a kernel (--device), or replace that op"
        )
        return TrainstabError(
            f"model {name!r} calls {op}, which has no {backend} kernel{f' ({location})' if location else ''}: {advice}"
        )
    return TrainstabError(f"model {name!r} failed on its first forward, a {shape} batch of token ids: {_raised(error)}")


#: How PyTorch says an op has no kernel for a backend (the message runs to 50 lines of dispatch keys).
_NO_KERNEL = re.compile(r"Could not run '([\w:.]+)' with arguments from the '(\w+)' backend")
