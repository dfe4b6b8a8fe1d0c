"""Handlers of ops that move channels of one dim without mixing them: flatten and view/reshape that
merge the channel dim with the dims after it, constant padding of channels, concatenation,
``chunk``, and indexing that leaves the channel dim whole.

Channels spread over several dims (heads) are the business of :mod:`.layouts`; these handlers
see channels on one dim. Each returns True when it handled the node (see :mod:`.ops`).
"""

from __future__ import annotations

import math
from typing import Any

import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from framework.pruning.graph.channels import Channels
from framework.pruning.graph.constants import AttributeInt
from framework.pruning.graph.elementwise import attach_parameter
from framework.pruning.graph.groups import CONSTANT_INDEX_REASON, SPLIT_REASON
from framework.pruning.graph.state import BuilderState, argument


def merge_trailing(
    state: BuilderState, node: torch.fx.Node, source: Channels, meta: TensorMetadata, start_dim: int
) -> bool:
    """``flatten(start_dim)``-like reshape. Feature j of the merged dim maps to channel j // inner."""
    shape, old = tuple(meta.shape), source.shape
    start = start_dim % len(old)
    if start > source.dim:  # the channel dim itself is untouched
        if shape[: source.dim + 1] != old[: source.dim + 1]:
            return False
        state.values[node] = Channels(source.ids, source.dim, shape)
        return True
    if start != source.dim or len(shape) != start + 1 or shape[:start] != old[:start]:
        return False
    inner = math.prod(old[start + 1 :])
    if shape[start] != len(source.ids) * inner:
        return False
    ids = source.ids if inner == 1 else [i for i in source.ids for _ in range(inner)]
    state.values[node] = Channels(ids, start, shape)
    return True


def flatten(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``torch.flatten(x, start_dim)`` / ``x.flatten(start_dim)`` to the last dim."""
    if not (isinstance(first, Channels) and isinstance(meta, TensorMetadata)):
        return False
    args = node.args
    start = node.kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
    end = node.kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
    return (
        isinstance(start, int) and end in (-1, len(first.shape) - 1) and merge_trailing(state, node, first, meta, start)
    )


def flatten_module(
    state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any
) -> bool:
    """``nn.Flatten`` to the last dim."""
    if not (isinstance(module, nn.Flatten) and len(inputs) == 1 and isinstance(meta, TensorMetadata)):
        return False
    return module.end_dim in (-1, len(inputs[0].shape) - 1) and merge_trailing(
        state, node, inputs[0], meta, module.start_dim
    )


def reshape(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """view/reshape: allowed when it is a flatten of the dims from the channel dim on, or keeps
    the dims up to the channel dim, and the sizes from the channel dim on are -1 or computed at
    run time (a constant would still hold the old channel count after thinning)."""
    if not (isinstance(first, Channels) and isinstance(meta, TensorMetadata)):
        return False
    sizes: Any = node.args[1:] if node.op == "call_method" else node.args[1:2]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    shape, old = tuple(meta.shape), first.shape
    if len(sizes) != len(shape) or len(shape) <= first.dim or any(isinstance(s, AttributeInt) for s in sizes):
        return False  # sizes written as module attributes: the layout handler claims them
    size = sizes[first.dim]
    if not ((type(size) is int and size == -1) or state.reads_channels(size, first.ids)):
        return False
    if len(shape) == first.dim + 1:  # everything from the channel dim on merged
        return merge_trailing(state, node, first, meta, first.dim)
    if shape[: first.dim + 1] != old[: first.dim + 1]:
        return False
    state.values[node] = Channels(first.ids, first.dim, shape)
    return True


def pad(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``F.pad``: spatial pads pass the channels through; constant channel pads add fixed channels."""
    if not (isinstance(first, Channels) and isinstance(meta, TensorMetadata)):
        return False
    pads = node.kwargs.get("pad", node.args[1] if len(node.args) > 1 else None)
    mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
    if not isinstance(pads, (tuple, list)):
        return False  # the pads of other dims may be computed at run time (timm's Swin pads to its window)
    ndim = len(first.shape)
    k = ndim - 1 - first.dim  # pads are listed from the last dim backwards
    before, after = (pads[2 * k], pads[2 * k + 1]) if 2 * k + 1 < len(pads) else (0, 0)
    if (before or after) and mode != "constant":
        return False
    if not (isinstance(before, int) and isinstance(after, int)) or before < 0 or after < 0:
        return False
    shape = tuple(meta.shape)
    if shape[first.dim] != len(first.ids) + before + after:
        return False
    head, tail = state.uf.new(before), state.uf.new(after)
    reason = "constant channels added by padding (their count is fixed in the code)"
    state.fix(head + tail, state.describe(node), reason, False)
    state.values[node] = Channels(head + first.ids + tail, first.dim, shape)
    return True


def cat(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``torch.cat`` along the channels concatenates the channel lists; along another dim it couples
    the parts position by position (a class token concatenated to the tokens goes with them)."""
    tensors = node.kwargs.get("tensors", node.args[0] if node.args else None)
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    if not isinstance(tensors, (tuple, list)) or not isinstance(dim, int) or not isinstance(meta, TensorMetadata):
        return False
    parameters = [t for t in tensors if isinstance(t, torch.fx.Node) and t in state.param_origin]
    parts = [state.values.get(t) if isinstance(t, torch.fx.Node) else None for t in tensors if t not in parameters]
    channels = [p for p in parts if isinstance(p, Channels) and not p.multi]
    if not parts or len(channels) != len(parts):
        return False
    cdim = channels[0].dim
    ndim = len(channels[0].shape)
    if any(p.dim != cdim or len(p.shape) != ndim for p in channels):
        return False
    shape = tuple(meta.shape)
    if parameters:  # a class token concatenated to the tokens: its channels go with theirs
        if dim % ndim == cdim or len(shape) != ndim:
            return False
        for parameter in parameters:
            if attach_parameter(state, parameter, channels[0], ndim, cdim) is False:
                return False
    if dim % ndim == cdim:
        ids = [i for p in channels for i in p.ids]
    else:
        for p in channels[1:]:
            if len(p.ids) != len(channels[0].ids):
                return False
            for a, b in zip(channels[0].ids, p.ids):
                state.uf.union(a, b)
        ids = channels[0].ids
    if shape[cdim] != len(ids):
        return False
    state.values[node] = Channels(ids, cdim, shape)
    return True


def chunk(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``chunk(n, dim=channels)`` couples position p of every chunk (each chunk loses the same count)."""
    if not isinstance(first, Channels):
        return False
    chunks = node.kwargs.get("chunks", node.args[1] if len(node.args) > 1 else None)
    dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
    if not isinstance(chunks, int) or not isinstance(dim, int) or not isinstance(meta, (tuple, list)):
        return False
    ndim = len(first.shape)
    if dim % ndim != first.dim:
        state.values[node] = [Channels(first.ids, first.dim, tuple(m.shape)) for m in meta]
        return True
    n = len(first.ids)
    if n % chunks or len(meta) != chunks:
        return False
    size = n // chunks
    for p in range(size):
        for c in range(1, chunks):
            state.uf.union(first.ids[p], first.ids[c * size + p])
    state.values[node] = [
        Channels(first.ids[c * size : (c + 1) * size], first.dim, tuple(m.shape)) for c, m in enumerate(meta)
    ]
    return True


def split(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``x.split(size, dim)`` / ``torch.split(x, sizes, dim)`` along the channels. A size written as a
    module attribute that thinning rewrites (:mod:`.constants`): ``split(self.expand_chs // 2)`` into
    equal parts couples position p of every part (as ``chunk``), a list gives each part its own count.
    A literal size cannot change: the parts before the last keep their channels (the last part is
    whatever remains, so it may shrink), a literal entry of a list keeps its part."""
    if not isinstance(first, Channels) or first.multi or not isinstance(meta, (tuple, list)):
        return False
    sizes = node.kwargs.get("split_size", node.kwargs.get("split_size_or_sections", argument(node, 1, "split_size")))
    dim = argument(node, 2, "dim", 0)
    if not isinstance(dim, int) or not all(isinstance(m, TensorMetadata) for m in meta):
        return False
    listed = list(sizes) if isinstance(sizes, (tuple, list)) else [sizes]
    if not all(isinstance(size, int) and size > 0 for size in listed):
        return False
    if dim % len(first.shape) != first.dim:  # along another dim: every part carries the channels
        for size in listed:
            state.claim(node, size, None)
        state.values[node] = [Channels(first.ids, first.dim, tuple(m.shape)) for m in meta]
        return True
    n = len(first.ids)
    if isinstance(sizes, int):
        parts = [first.ids[start : start + sizes] for start in range(0, n, sizes)]
    else:
        bounds = [sum(listed[:k]) for k in range(len(listed) + 1)]
        parts = [first.ids[a:b] for a, b in zip(bounds, bounds[1:])]
    if len(parts) != len(meta) or any(len(p) != m.shape[first.dim] for p, m in zip(parts, meta)):
        return False
    if isinstance(sizes, int):
        _split_equal(state, node, sizes, parts, n)
    else:
        for size, part in zip(listed, parts):
            rewritable = state.rewritable(size)
            state.claim(node, size, part if rewritable else None)
            if not rewritable:
                state.keep(node, part, SPLIT_REASON)
    state.values[node] = [Channels(part, first.dim, tuple(m.shape)) for part, m in zip(parts, meta)]
    return True


def _split_equal(state: BuilderState, node: torch.fx.Node, size: int, parts: list[list[int]], n: int) -> None:
    if state.rewritable(size) and n % size == 0:
        for p in range(size):
            for part in parts[1:]:
                state.uf.union(parts[0][p], part[p])
        state.claim(node, size, parts[0])
        return
    state.claim(node, size, None)
    before_last = [i for part in parts[:-1] for i in part]
    if before_last:
        state.keep(node, before_last, SPLIT_REASON)


def channel_slice(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``x[:, a:b]``: a range of the channels. A bound written as a module attribute that thinning
    rewrites (``x[:, :self.num_1x1_c]``) becomes the count of surviving channels before it; a literal
    bound stays where it is, so the channels before it (before the end, for a negative one) are kept."""
    if not (isinstance(first, Channels) and isinstance(meta, TensorMetadata)) or first.multi:
        return False
    entries = _expanded(node.args[1], len(first.shape))
    if entries is None or not isinstance(entries[first.dim], slice):
        return False
    window = entries[first.dim]
    if window.step not in (None, 1) or not all(b is None or isinstance(b, int) for b in (window.start, window.stop)):
        return False
    n = len(first.ids)
    ids = first.ids[window.start : window.stop]
    dim = first.dim - sum(isinstance(e, int) for e in entries[: first.dim])
    if tuple(meta.shape)[dim] != len(ids):
        return False
    for bound in (window.start, window.stop):
        if bound is None:
            continue
        if state.rewritable(bound) and bound >= 0:
            state.claim(node, bound, first.ids[:bound])
            continue
        state.claim(node, bound, None)
        state.keep(node, first.ids[:bound] if bound >= 0 else first.ids[n + bound :], CONSTANT_INDEX_REASON)
    state.values[node] = Channels(ids, dim, tuple(meta.shape))
    return True


def _expanded(index: Any, ndim: int) -> list[Any] | None:
    """The entries of ``x[index]`` one per dim (Ellipsis filled in): slices and ints only."""
    entries = index if isinstance(index, tuple) else (index,)
    if any(e is None or isinstance(e, torch.fx.Node) for e in entries):
        return None
    if Ellipsis in entries:
        at = entries.index(Ellipsis)
        entries = entries[:at] + (slice(None),) * (ndim - (len(entries) - 1)) + entries[at + 1 :]
    if len(entries) > ndim or not all(isinstance(e, (slice, int)) for e in entries):
        return None
    return list(entries) + [slice(None)] * (ndim - len(entries))


# ----------------------------------------------------------------------------- indexing
def item_of_tuple(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``outputs[i]`` of a node that returned several tensors."""
    if not (isinstance(first, list) and isinstance(node.args[1], int)):
        return False
    state.values[node] = first[node.args[1]]
    return True


def item_of_untracked(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """Indexing a value that carries no channels (a shape tuple): nothing to follow."""
    return first is None


def item(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``x[..., a:b]`` with the channel dim left whole (``:``); integer indices drop other dims."""
    if not (isinstance(first, Channels) and isinstance(meta, TensorMetadata)):
        return False
    entries: Any = node.args[1]
    if not isinstance(entries, tuple):
        entries = (entries,)
    if any(i is None or isinstance(i, torch.fx.Node) for i in entries):
        return False
    ndim = len(first.shape)
    if Ellipsis in entries:
        at = entries.index(Ellipsis)
        fill = ndim - (len(entries) - 1)
        entries = entries[:at] + (slice(None),) * fill + entries[at + 1 :]
    if len(entries) > ndim:
        return False
    entries = list(entries) + [slice(None)] * (ndim - len(entries))
    if entries[first.dim] != slice(None) or not all(isinstance(e, (slice, int)) for e in entries):
        return False
    dim = first.dim - sum(isinstance(e, int) for e in entries[: first.dim])
    if tuple(meta.shape)[dim] != len(first.ids):
        return False
    state.values[node] = Channels(first.ids, dim, tuple(meta.shape))
    return True
