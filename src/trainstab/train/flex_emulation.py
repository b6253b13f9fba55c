"""flex_attention on the CPU: the same function computed densely, so a flex model trains and is captured.

PyTorch's ``flex_attention`` refuses inputs that require grad on the CPU ("FlexAttention does not support
backward on CPU"), and as a higher-order operator it cannot run under the attention tracer. While
trainstab runs a user's model (:func:`flex_attention_on_cpu`, entered by the stacked model's forward and
around the training loop, whose backward may recompute a checkpointed forward),
a call to ``torch.nn.attention.flex_attention.flex_attention`` with CPU inputs that require grad is computed
by :func:`dense_flex_attention` instead:

    z = q·kᵀ · scale                                  (B, Hq, L, S), fp32 (fp64 for fp64 inputs)
    s = score_mod(z, b, h, q_idx, kv_idx)             per element, as flex's own math reference does
    s = -inf where the block mask removes the pair    partial blocks ask mask_mod, full blocks do not
    out = softmax(s) @ v                              a row with no allowed key gives 0 (lse -inf)

Every other call runs flex itself: on CPU tensors that do not require grad, and on any other device. Inside
an attention capture such a call gets its record from the same dense scores (without gradients), then runs
flex with the tracer stepped aside. Only the function object changes, for the length of the forward, so a
model that imported ``flex_attention`` by name or wrapped it in ``torch.compile`` (torchtitan) is reached
too; on the CPU, a forward that meets ``torch.compile`` also runs eagerly
(``torch.compiler.set_stance("force_eager")``): compiling a proxy on the CPU costs more than training it,
and flex would refuse the gradient there anyway.

The capture records ``z`` before ``score_mod`` (as for soft-capping: the logit that grows), over the pairs
the mask allows, per batch row and query head, and the entropy of the softmax flex really takes.

What cannot be emulated is refused with :class:`~trainstab.core.errors.TrainstabError`: ``max_scores`` in
``return_aux`` (flex has no CPU reference for it), nested-tensor inputs, and a block mask made for other
sequence lengths.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from trainstab.core.errors import TrainstabError
from trainstab.train.attention_stats import attention_record
from trainstab.train.capture import add_record, is_capturing, outside_capture, unwatched

__all__ = ["dense_flex_attention", "flex_attention_on_cpu"]


class _IndexWithTensors(TorchFunctionMode):
    """``x[t]`` with tensor indices as ``aten.index`` while a score_mod or mask_mod is vmapped.

    Under ``vmap`` an index is a batched 0-d tensor; Python's ``__getitem__`` would turn it into an int
    (``.item()``), which vmap refuses. ``aten.index`` takes it as a tensor (how flex's own math reference
    runs the same functions). Indexing with anything else is left as it is.
    """

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        """Route tensor-only ``__getitem__`` to ``aten.index``; run everything else unchanged."""
        if func is torch.Tensor.__getitem__:
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if index and all(isinstance(i, torch.Tensor) for i in index):
                return torch.ops.aten.index(args[0], list(index))
        return func(*args, **(kwargs or {}))


def _over_pairs(fn: Callable[..., torch.Tensor], with_score: bool) -> Callable[..., torch.Tensor]:
    """``fn`` of scalars (score?, b, h, q_idx, kv_idx) vmapped to (B, H, L, S): one vmap per axis, kv innermost."""
    lead = (0,) if with_score else ()
    vmapped = fn
    for axis in (3, 2, 1, 0):  # kv_idx, q_idx, h, b
        index_dims = tuple(0 if i == axis else None for i in range(4))
        vmapped = torch.vmap(vmapped, in_dims=(*lead, *index_dims))
    return vmapped


def _allowed_pairs(
    block_mask: Any, batch: int, heads: int, queries: int, keys: int, device: torch.device
) -> torch.Tensor | None:
    """Which (b, h, q, kv) pairs the block mask lets attend, broadcastable to (B, H, L, S); None: all of them.

    A pair counts when its block is a full block, or a partial block whose ``mask_mod`` allows it: what the
    flex kernels compute. For a block mask made by ``create_block_mask`` from its mask_mod, that is mask_mod
    alone, which is what flex's eager forward computes.
    """
    if block_mask is None:
        return None
    if tuple(block_mask.seq_lengths) != (queries, keys):
        raise TrainstabError(
            f"flex_attention got a block mask made for (q_len, kv_len) = {tuple(block_mask.seq_lengths)} and "
            f"queries of length {queries}, keys of length {keys}; build the block mask for the sequence length "
            "the model is called with (trainstab trains at context_length)"
        )
    block_q, block_kv = block_mask.BLOCK_SIZE
    q_block = torch.arange(queries, device=device) // block_q  # (L,)
    kv_block = torch.arange(keys, device=device) // block_kv  # (S,)

    def per_pair(blocks: torch.Tensor) -> torch.Tensor:  # (Bm, Hm, QB, KB) -> (Bm, Hm, L, S)
        return blocks.bool()[:, :, q_block[:, None], kv_block[None, :]]

    present = per_pair(block_mask.to_dense())
    full = None
    if block_mask.full_kv_num_blocks is not None:
        only_full = type(block_mask).from_kv_blocks(
            block_mask.full_kv_num_blocks,
            block_mask.full_kv_indices,
            BLOCK_SIZE=block_mask.BLOCK_SIZE,
            seq_lengths=block_mask.seq_lengths,
        )
        full = per_pair(only_full.to_dense())
    indices = [torch.arange(n, device=device) for n in (batch, heads, queries, keys)]
    with _IndexWithTensors():
        by_mask_mod = _over_pairs(block_mask.mask_mod, with_score=False)(*indices).bool()  # (B, H, L, S)
    allowed = present & by_mask_mod
    return allowed if full is None else allowed | full


def _scores(
    query: torch.Tensor,
    key: torch.Tensor,
    score_mod: Callable[..., torch.Tensor] | None,
    block_mask: Any,
    scale: float | None,
    enable_gqa: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """flex's scores for query (B, Hq, L, E) and key (B or 1, Hkv, S, E), all (B, Hq, L, S) in fp32 (fp64 for
    fp64 inputs): z = q·kᵀ·scale, the softmax's input (score_mod applied, -inf where the mask removes the pair),
    and which pairs the mask allows (None: all)."""
    if query.dim() != 4 or key.dim() != 4:
        raise TrainstabError("flex_attention needs 4-D query, key and value (B, H, L, E)")
    batch, heads, queries, _ = query.shape
    kv_heads, keys = key.shape[1], key.shape[2]
    if heads != kv_heads and (not enable_gqa or heads % kv_heads):
        raise TrainstabError(
            f"flex_attention got {heads} query heads and {kv_heads} key/value heads: grouped-query attention "
            "needs enable_gqa=True and query heads a multiple of key/value heads"
        )
    if key.shape[0] not in (batch, 1):
        raise TrainstabError(f"flex_attention got query batch {batch} and key/value batch {key.shape[0]}")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    working = torch.float64 if query.dtype == torch.float64 else torch.float32
    key = key.repeat_interleave(heads // kv_heads, dim=1).expand(batch, -1, -1, -1)  # (B, Hq, S, E): head h // g
    with torch.autocast(query.device.type, enabled=False):  # flex sums q·k in fp32, under bf16 autocast too
        logits = (query.to(working) @ key.to(working).transpose(-2, -1)) * scale  # (B, Hq, L, S)
    modified = logits
    if score_mod is not None:
        indices = [torch.arange(n, device=query.device) for n in (batch, heads, queries, keys)]
        with _IndexWithTensors():
            modified = _over_pairs(score_mod, with_score=True)(logits, *indices).to(working)
    allowed = _allowed_pairs(block_mask, batch, heads, queries, keys, query.device)
    if allowed is not None:
        modified = modified.masked_fill(~allowed, -math.inf)
    return logits, modified, allowed


def _record(logits: torch.Tensor, modified: torch.Tensor, allowed: torch.Tensor | None) -> None:
    """Add one flex call's record to the capture: max |z| before score_mod over the allowed pairs, the entropy
    of the softmax flex takes."""
    with torch.no_grad():
        add_record(attention_record(logits.detach(), allowed, modified.detach()))


def dense_flex_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    score_mod: Callable[..., torch.Tensor] | None = None,
    block_mask: Any = None,
    scale: float | None = None,
    enable_gqa: bool = False,
    return_lse: bool = False,
    kernel_options: Any = None,
    *,
    return_aux: Any = None,
) -> Any:
    """``flex_attention`` computed densely with ordinary ops: forward and backward run on any device.

    Same signature and results as ``torch.nn.attention.flex_attention.flex_attention``: query (B, Hq, L, E),
    key (B or 1, Hkv, S, E), value (B or 1, Hkv, S, Ev) -> out (B, Hq, L, Ev), and the log-sum-exp (B, Hq, L)
    when asked for. ``kernel_options`` tune flex's kernels and change nothing here. Inside an attention
    capture the call is recorded once (module docstring).
    """
    del kernel_options  # kernel tuning: nothing to tune in a dense computation
    if any(t.is_nested for t in (query, key, value)):
        raise TrainstabError("flex_attention with nested-tensor inputs cannot be emulated on the CPU; pad them")
    if return_aux is not None and getattr(return_aux, "max_scores", False):
        raise TrainstabError(
            "flex_attention's return_aux=AuxRequest(max_scores=True) cannot be emulated on the CPU (flex itself "
            "has no CPU implementation of it to match); ask for lse only, or gate on a CUDA device"
        )
    with unwatched():  # recorded once, below, not again by the tracer from the ops of this computation
        logits, modified, allowed = _scores(query, key, score_mod, block_mask, scale, enable_gqa)
        batch, heads = query.shape[:2]
        value = value.repeat_interleave(heads // value.shape[1], dim=1).expand(batch, -1, -1, -1)  # (B, Hq, S, Ev)
        # A row with no allowed key attends to nothing: out 0, lse -inf (flex's safe softmax).
        has_key = (modified != -math.inf).any(-1, keepdim=True)  # (B, Hq, L, 1); a NaN row stays NaN, as in flex
        lse = torch.logsumexp(modified.masked_fill(~has_key, 0.0), dim=-1).masked_fill(~has_key[..., 0], -math.inf)
        probs = torch.softmax(modified.masked_fill(~has_key, 0.0), dim=-1) * has_key  # (B, Hq, L, S)
        out = probs.to(query.dtype) @ value.to(query.dtype)  # (B, Hq, L, Ev)
        if is_capturing():
            _record(logits, modified, allowed)
    if return_aux is not None:
        from torch.nn.attention.flex_attention import AuxOutput  # torch >= 2.9, as return_aux

        return out, AuxOutput(lse=lse if return_aux.lse else None, max_scores=None)
    if return_lse:
        return out, lse
    return out


class _Swap:
    """The state of the code swap: how many scopes are open, and flex's own function to call through."""

    lock = threading.Lock()
    depth = 0
    original: Callable[..., Any] | None = None
    saved: tuple[Any, Any, Any] | None = None  # flex's __code__, __defaults__, __kwdefaults__


def _trampoline(*args: Any, **kwargs: Any) -> Any:
    """Stands in for flex_attention's code while a scope is open (flex's globals, hence the import here)."""
    from trainstab.train.flex_emulation import _dispatch

    return _dispatch(*args, **kwargs)


def _dispatch(*args: Any, **kwargs: Any) -> Any:
    """One flex_attention call: emulated on the CPU when it needs a gradient or is captured, else flex itself."""
    original = _Swap.original
    assert original is not None  # set for as long as the trampoline is installed
    bound = inspect.signature(original).bind(*args, **kwargs)
    query = bound.arguments["query"]
    # flex refuses any input that requires grad on the CPU, under no_grad too (its _validate_device)
    inputs = (query, bound.arguments["key"], bound.arguments["value"])
    refused = any(isinstance(t, torch.Tensor) and t.requires_grad for t in inputs)
    emulated = isinstance(query, torch.Tensor) and query.device.type == "cpu" and refused
    if emulated:
        return dense_flex_attention(*bound.args, **bound.kwargs)
    if not is_capturing() or not isinstance(query, torch.Tensor):
        return _as_itself(original, query, args, kwargs)
    # Captured where flex runs (a GPU, or nothing requires grad): the record from the dense scores, then flex
    # itself, with the tracer stepped aside (a higher-order operator cannot run under it).
    with unwatched():
        arguments = bound.arguments
        _record(
            *_scores(
                query.detach(),
                arguments["key"].detach(),
                arguments.get("score_mod"),
                arguments.get("block_mask"),
                arguments.get("scale"),
                bool(arguments.get("enable_gqa", False)),
            )
        )
    with outside_capture():
        return _as_itself(original, query, args, kwargs)


#: flex's advice when it runs eagerly; trainstab runs it so (force_eager, or an uncompiled no-grad call on the
#: CPU), so the advice is not the user's to act on, and under filterwarnings=error it would stop their run.
_EAGER_ADVICE = "flex_attention called without torch.compile"


def _as_itself(original: Callable[..., Any], query: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """flex itself; on the CPU without its eager-mode advice (the only warning left out)."""
    if not isinstance(query, torch.Tensor) or query.device.type != "cpu":
        return original(*args, **kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EAGER_ADVICE)
        return original(*args, **kwargs)


@contextlib.contextmanager
def flex_attention_on_cpu(device: torch.device | str | None) -> Iterator[None]:
    """Run the block with flex_attention emulated where flex cannot run (module docstring); restores all after.

    Free when the model does not use flex: torch's flex module is imported (about 2 ms, once) and one
    function's code is swapped and put back. On a CPU ``device``, if torch.compile's machinery is loaded (and
    torch has ``set_stance``, 2.6+), every compiled region in the block runs eagerly, flex or not; ``None``
    (an attention capture, which does not know the device) leaves compilation alone.
    """
    try:
        from torch.nn.attention import flex_attention as flex_module  # torch >= 2.5
    except ImportError:
        yield
        return
    function = flex_module.flex_attention
    with _Swap.lock:
        if _Swap.depth == 0:
            _Swap.saved = (function.__code__, function.__defaults__, function.__kwdefaults__)
            _Swap.original = types.FunctionType(function.__code__, function.__globals__, function.__name__)
            _Swap.original.__defaults__ = function.__defaults__
            _Swap.original.__kwdefaults__ = function.__kwdefaults__
            function.__code__ = _trampoline.__code__
            function.__defaults__ = None
            function.__kwdefaults__ = None
        _Swap.depth += 1
    try:  # from here on, whatever happens (set_stance refusing, Ctrl-C), the swap is undone
        with contextlib.ExitStack() as scope:
            stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
            on_cpu = device is not None and torch.device(device).type == "cpu"
            if on_cpu and "torch._dynamo" in sys.modules and stance is not None:
                scope.enter_context(stance("force_eager"))
            yield
    finally:
        with _Swap.lock:
            _Swap.depth -= 1
            if _Swap.depth == 0 and _Swap.saved is not None:
                function.__code__, function.__defaults__, function.__kwdefaults__ = _Swap.saved
                _Swap.saved = _Swap.original = None
