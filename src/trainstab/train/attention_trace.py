"""Find attention in a forward pass, however it is written, by watching ATen ops.

PyTorch lowers every way of writing attention to a few ATen operators, so a
``TorchDispatchMode`` sees them all with no change to the model, inside
``nn.MultiheadAttention``, torch's Transformer layers, ``functional_call``
and transformers alike:

1. **Fused SDPA kernels** (``scaled_dot_product_attention`` on its flash,
   memory-efficient or cuDNN path): one op with q, k, the mask, ``is_causal``
   and the scale. The logits are recomputed from q and k.
2. **Everything else** (hand-written ``softmax(q @ kᵀ * scale)``, einsum,
   ``nn.MultiheadAttention(need_weights=True)``, transformers eager, SDPA's
   own math path): a batched matmul of two *data* tensors starts a score
   lineage; scalar scaling, additive masks and biases, ``masked_fill``,
   ``where``, soft-capping (tanh, clamp), casts and reshapes carry it; a
   softmax over its key axis records it. Any other op ends the lineage.

"Data" means not computed from parameters alone, which is what tells
q @ kᵀ from x @ W: a classifier head, an MoE router
(einsum or linear) or the loss on the logits has a weight operand and is
never mistaken for attention, and neither is an op on a mask alone.

Along a lineage the logits are kept as q·k times every scalar factor applied,
with soft-capping taken as the identity: ``cap * tanh(z / cap)`` keeps z, the
pre-cap logit that grows. Masks are kept beside them as the keys they remove
(``masked_fill``, ``where``, and additive terms at or below -1e4); other
additive terms (position biases) are left out of z. A write the tracer does
not follow (``s[..., :2] = -inf``) ends the lineage, through any view, by the
tensor's version counter. Under ``inference_mode`` composite ops arrive
whole and are decomposed here. Shapes follow the watched tensors; a score
tensor is (N, ..., Tq, Tk).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from trainstab.train.attention_stats import AttentionRecord, allowed_by_additive_mask, attention_record, sdpa_record

aten = torch.ops.aten
V = TypeVar("V")


def _ops(*names: str) -> set[Any]:
    """The ATen op packets of these names that this torch has (newer kernels are absent from older ones)."""
    return {getattr(aten, name) for name in names if hasattr(aten, name)}


#: Fused SDPA kernels (CPU flash, CUDA flash / memory-efficient / cuDNN, out-of-tree backends).
_SDPA_KERNELS = _ops(
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
)
#: Products that start a score lineage when both operands are data.
_PRODUCTS = _ops("bmm", "baddbmm", "mm")
#: Ops that leave the logits as they are: copies, casts, and soft-capping.
_KEEP = _ops("clone", "detach", "alias", "_to_copy", "tanh", "clamp", "clamp_min", "clamp_max")
#: Ops that move elements around: applied alike to the logits and their masks.
_SHAPE = _ops("view", "_unsafe_view", "transpose", "t", "permute", "unsqueeze", "squeeze", "expand", "slice", "select")
_SCALE = _ops("mul", "div", "neg")
_ADD = _ops("add", "sub")
_MASK = _ops("masked_fill", "where")
_SOFTMAX = _ops("_softmax", "_safe_softmax")  # _safe_softmax: SDPA's math path, torch >= 2.5
_VIEWS = _ops("view", "_unsafe_view")  # replayed as reshape: the copies kept here need not share strides


@dataclass(frozen=True)
class _Scores:
    """What is known of a tensor that descends from a q @ kᵀ product.

    The lineage's tensors are the tracer's own: never the model's, never changed in place.
    """

    logits: torch.Tensor  # the tensor's shape: q·k times the scalars applied, no masks, biases or caps, fp32
    allowed: torch.Tensor | None  # bool, broadcastable to it: False where a mask removed the key
    keys: int  # Tk of the product: a softmax over an axis of another length is not attention
    root: int  # which product this came from, to record each attention once
    heads: int | None  # heads of the enclosing nn.MultiheadAttention, which computes (N*H, Tq, Tk)
    version: int | None = None  # the tensor's version counter when this was set: a write since ends the lineage

    def reshaped(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Scores:
        """The same op applied to the logits and to the mask (expanded to the tensor's shape first)."""
        shape = self.logits.shape
        if func.overloadpacket in _VIEWS:

            def apply(t: torch.Tensor) -> torch.Tensor:
                return t.expand(shape).reshape(args[1])

        else:

            def apply(t: torch.Tensor) -> torch.Tensor:
                moved: torch.Tensor = func(t.expand(shape), *args[1:], **kwargs)
                return moved

        return replace(self, logits=apply(self.logits), allowed=None if self.allowed is None else apply(self.allowed))

    def broadcast(self, other: Any) -> _Scores:
        """These scores expanded to the shape they take when combined with ``other``."""
        if not isinstance(other, torch.Tensor):
            return self
        shape = torch.broadcast_shapes(self.logits.shape, other.shape)  # type: ignore[no-untyped-call]
        return self if shape == self.logits.shape else replace(self, logits=self.logits.expand(shape))

    def masked(self, allowed: torch.Tensor) -> _Scores:
        """These scores with more keys removed (``allowed`` is copied: it may be the model's tensor)."""
        allowed = allowed.bool()
        return replace(self, allowed=allowed.clone() if self.allowed is None else self.allowed & allowed)

    def plus(self, term: Any) -> _Scores:
        """These scores plus a term that is not q·k: a mask where it is at or below MASK_LIMIT.

        A term constant along the key axis (a scalar, or last dimension 1, such as
        the row max a hand-written stable softmax subtracts) does not change the
        softmax, and masks nothing. Each term is judged alone, so a -1e4 mask plus
        a positive position bias still masks.
        """
        if not isinstance(term, torch.Tensor) or term.dim() == 0 or term.shape[-1] == 1:
            return self
        return self.broadcast(term).masked(allowed_by_additive_mask(term))


class _ByTensor(Generic[V]):
    """A map keyed by tensor identity that forgets a tensor once it is freed; any other key is absent."""

    def __init__(self) -> None:
        self._map: Any = WeakIdKeyDictionary()

    def get(self, key: Any) -> V | None:
        """The value for ``key``, or None."""
        return self._map.get(key) if isinstance(key, torch.Tensor) else None

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, torch.Tensor) and key in self._map

    def set(self, key: torch.Tensor, value: V) -> None:
        """Map ``key`` to ``value``."""
        self._map[key] = value

    def pop(self, key: torch.Tensor) -> None:
        """Forget ``key`` if it is there."""
        self._map.pop(key, None)


def _out_of_place(func: Any) -> Any:
    """The out-of-place op whose lineage rule an in-place op follows (add_ -> add), or None.

    Only ops whose rule never runs the op itself: an in-place reshape or cast ends the lineage.
    """
    name = func._schema.name.split("::")[-1].removesuffix("_")
    packet = getattr(aten, name) if hasattr(aten, name) else None
    return packet if packet in _SCALE | _ADD | _MASK | _KEEP else None


@functools.cache
def _is_composite(func: Any) -> bool:
    """Whether ``func`` has a CompositeImplicitAutograd kernel (one C++ query per op per process)."""
    key = torch._C.DispatchKey.CompositeImplicitAutograd
    return bool(torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), key))


def _version(tensor: torch.Tensor) -> int | None:
    """The tensor's version counter (None for inference tensors, which have none)."""
    try:
        return int(tensor._version)
    except RuntimeError:
        return None


def _named_arguments(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """An op's arguments by their schema names, defaults filled in."""
    named: dict[str, Any] = {}
    for index, argument in enumerate(func._schema.arguments):
        if index < len(args) and not argument.kwarg_only:
            named[argument.name] = args[index]
        elif argument.name in kwargs:
            named[argument.name] = kwargs[argument.name]
        else:
            named[argument.name] = argument.default_value if argument.has_default_value() else None
    return named


def _tensors(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[torch.Tensor]:
    """The tensors among an ATen op's arguments (ATen nests them one list deep at most)."""
    for value in itertools.chain(args, kwargs.values()):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, list | tuple):
            yield from (item for item in value if isinstance(item, torch.Tensor))


def _outputs(out: Any) -> Iterator[torch.Tensor]:
    """The tensors an op returned."""
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, list | tuple):
        yield from (item for item in out if isinstance(item, torch.Tensor))


class AttentionTracer(TorchDispatchMode):
    """A dispatch mode that appends one :class:`AttentionRecord` per attention call to ``records``.

    It never changes what an op computes: every op runs as called, and the
    statistics are computed beside it. Enter it around a forward pass only,
    inside :meth:`module_hooks`.
    """

    def __init__(self, records: list[AttentionRecord]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.records = records
        self.paused = False  # True while the tracer's own bookkeeping runs ops at the Python level
        self._scores: _ByTensor[_Scores] = _ByTensor()  # the score lineage of each tensor that has one
        self._static: _ByTensor[bool] = _ByTensor()  # buffers, and tensors computed from parameters and buffers
        self._recorded_roots: set[int] = set()
        self._roots = itertools.count()
        self._heads: list[int] = []  # stack of enclosing nn.MultiheadAttention head counts

    @contextmanager
    def module_hooks(self) -> Iterator[None]:
        """Global module hooks, for the block: the heads of nn.MultiheadAttention, and buffers as weights."""
        hooks = [
            nn.modules.module.register_module_forward_pre_hook(self._enter_module),
            nn.modules.module.register_module_forward_hook(self._leave_module, always_call=True),
        ]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()

    def _enter_module(self, module: nn.Module, inputs: Any) -> None:
        for buffer in module.buffers(recurse=False):  # a buffer is a weight too, e.g. prototypes or a fixed head
            self._static.set(buffer, True)
        if isinstance(module, nn.MultiheadAttention):
            # It merges heads into the batch, (N*H, T, T); its head count splits them again.
            self._heads.append(module.num_heads)

    def _leave_module(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(module, nn.MultiheadAttention) and self._heads:
            self._heads.pop()

    def _lineage(self, tensor: Any) -> _Scores | None:
        """The score lineage of ``tensor``, unless it was written to since (through any view)."""
        scores = self._scores.get(tensor)
        if scores is None or scores.version != _version(tensor):
            return None
        return scores

    def record_reported(self, logits: torch.Tensor, record: Callable[[], AttentionRecord]) -> None:
        """Append ``record()`` for logits a model reports itself, unless this attention is already recorded."""
        scores = self._lineage(logits)
        if scores is not None:
            if scores.root in self._recorded_roots:
                return
            self._recorded_roots.add(scores.root)
        self.paused = True
        try:
            self.records.append(record())
        finally:
            self.paused = False

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        """Run ``func`` unchanged; record attention and carry score lineages beside it."""
        kwargs = kwargs or {}
        if self.paused:
            return func(*args, **kwargs)
        if _is_composite(func):
            # Under inference_mode composite ops (matmul, softmax, SDPA) arrive whole: run their own
            # decomposition with the tracer on, so their parts are seen as they are otherwise.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        packet = func.overloadpacket
        if packet in _SDPA_KERNELS:
            out = func(*args, **kwargs)
            with torch.no_grad():
                self._record_sdpa(func, args, kwargs)
            return out
        inputs = list(_tensors(args, kwargs))
        in_place = func._schema.name.endswith("_")
        # Before running: an in-place op changes its input, and the lineage reads the old values.
        new_scores = None
        if any(self._lineage(t) is not None for t in inputs):
            followed = _out_of_place(func) if in_place else packet
            if followed is not None:
                new_scores = self._guarded(self._follow, func, followed, args, kwargs)
        if in_place and args and isinstance(args[0], torch.Tensor):
            self._scores.pop(args[0])
        out = func(*args, **kwargs)
        # Parameters and buffers seed "static"; a factory (ones, arange, zeros) does not: token ids can come from one.
        static = bool(inputs) and all(isinstance(t, nn.Parameter) or t in self._static for t in inputs)
        for tensor in _outputs(out):
            if static:
                self._static.set(tensor, True)
            else:
                self._static.pop(tensor)
        if new_scores is not None and isinstance(out, torch.Tensor):
            version = _version(out)
            if in_place and version is not None:
                version += 1  # autograd's in-place layer bumps the counter right after this op returns
            self._scores.set(out, replace(new_scores, version=version))
        elif packet in _PRODUCTS and not static and isinstance(out, torch.Tensor):
            self._guarded(self._start, func, args, kwargs, out)
        return out

    def _guarded(self, step: Callable[..., _Scores | None], *args: Any) -> _Scores | None:
        """Run a bookkeeping step; one that cannot follow an op (odd arguments) ends the lineage there.

        The tracer only watches: whatever its bookkeeping meets, the model's op has run or will run as called.
        """
        try:
            return step(*args)
        except (RuntimeError, TypeError, ValueError, IndexError):
            return None

    def _start(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: torch.Tensor) -> None:
        """Start a lineage at a product of two data tensors (q @ kᵀ, and also attention @ v)."""
        named = _named_arguments(func, args, kwargs)
        packet = func.overloadpacket
        a, b = (named["batch1"], named["batch2"]) if packet is aten.baddbmm else (named["self"], named["mat2"])
        weight = any(isinstance(t, nn.Parameter) or t in self._static for t in (a, b))
        if weight and not self._heads:
            return  # x @ W; inside nn.MultiheadAttention every product is attention (learned queries too)
        with torch.no_grad():  # recomputed in fp32, as for the fused kernels: one precision for every path
            logits = torch.mm(a.float(), b.float()) if packet is aten.mm else torch.bmm(a.float(), b.float())
            scores = _Scores(
                logits=logits,
                allowed=None,
                keys=out.shape[-1],
                root=next(self._roots),
                heads=self._heads[-1] if self._heads else None,
                version=_version(out),
            )
            if packet is aten.baddbmm:  # beta * input + alpha * (a @ b): the input is a mask or bias
                scores = replace(scores, logits=logits * named["alpha"])
                if named["beta"] != 0:  # with beta 0 the input is ignored (it may hold NaN or garbage)
                    scores = scores.plus(named["self"].float() * named["beta"])
        self._scores.set(out, scores)

    def _follow(self, func: Any, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Scores | None:
        """The lineage of ``func``'s output, or None where the op ends it; records a softmax."""
        with torch.no_grad():
            first = self._lineage(args[0]) if args else None
            if packet in _KEEP:
                return first
            if packet in _SHAPE:
                return first.reshaped(func, args, kwargs) if first is not None else None
            if packet in _SOFTMAX:
                if first is not None:
                    self._record_softmax(first, args[0], args[1])
                return None
            if packet in _SCALE and "rounding_mode" not in kwargs:
                return self._scaled(packet, args, first)
            if packet in _ADD:
                return self._added(packet, args, kwargs, first)
            if packet in _MASK:
                return self._masked(packet, args, first)
        return None

    def _scaled(self, packet: Any, args: tuple[Any, ...], first: _Scores | None) -> _Scores | None:
        """mul, div, neg: a scalar or per-head temperature scales the logits."""
        if packet is aten.neg:
            return replace(first, logits=-first.logits) if first is not None else None
        other = args[1]
        if first is None:  # other * scores
            second = self._lineage(other) if packet is aten.mul else None
            return replace(second, logits=second.logits * args[0]) if second is not None else None
        if self._lineage(other) is not None:
            return None  # a product of two score tensors is not a logit
        return replace(first, logits=first.logits * other if packet is aten.mul else first.logits / other)

    def _added(
        self, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], first: _Scores | None
    ) -> _Scores | None:
        """add, sub: terms that are not scores (masks, position biases) stay out of the logits."""
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        sign = -1 if packet is aten.sub else 1
        other = args[1]
        second = self._lineage(other)
        if first is not None and second is None:
            return first.plus(other * (sign * alpha) if isinstance(other, torch.Tensor) else other)
        if first is None and second is not None:  # bias + scores
            return replace(second, logits=second.logits * (sign * alpha)).plus(args[0])
        if first is not None and second is not None:  # e.g. content + position scores of one attention
            combined = first.broadcast(second.logits)
            combined = replace(combined, logits=combined.logits + second.logits * (sign * alpha))
            return combined if second.allowed is None else combined.masked(second.allowed)
        return None

    def _masked(self, packet: Any, args: tuple[Any, ...], first: _Scores | None) -> _Scores | None:
        """masked_fill(scores, mask, value) and where(keep, scores, value) remove keys."""
        if packet is aten.masked_fill:
            return first.masked(~args[1].bool()) if first is not None else None
        condition, when_true, when_false = args
        kept, dropped = self._lineage(when_true), self._lineage(when_false)
        if kept is not None and dropped is None:
            return kept.broadcast(condition).masked(condition)
        if dropped is not None and kept is None:
            return dropped.broadcast(condition).masked(~condition.bool())
        return None

    def _record_softmax(self, scores: _Scores, softmax_input: torch.Tensor, dim: int) -> None:
        """A softmax over the key axis of a score lineage is one attention call."""
        if dim % softmax_input.dim() != softmax_input.dim() - 1 or softmax_input.shape[-1] != scores.keys:
            return
        if scores.root in self._recorded_roots:
            return  # already reported through record_attention_logits, or softmaxed twice
        self._recorded_roots.add(scores.root)
        logits = scores.logits.expand(softmax_input.shape)
        self.records.append(attention_record(logits, scores.allowed, softmax_input, scores.heads))

    def _record_sdpa(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A fused SDPA kernel: the logits from its q and k, its mask, causal flag and scale."""
        named = _named_arguments(func, args, kwargs)
        q, k = named["query"].float(), named["key"].float()
        mask = named.get("attn_mask", named.get("attn_bias"))
        if k.shape[-3] != q.shape[-3]:  # grouped-query attention: each k head serves several q heads
            k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        scale = named["scale"] if named["scale"] is not None else 1.0 / math.sqrt(q.shape[-1])
        logits = (q @ k.transpose(-2, -1)) * scale  # (..., H, Tq, Tk)
        self.records.append(sdpa_record(logits, mask, bool(named["is_causal"])))
