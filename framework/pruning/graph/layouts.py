"""How channels move between tensor dims: permute, reshape, indexing, normalisation, softmax.

In a transformer the channels do not stay on one dim: ``permute`` moves them, ``view(B, L, H, hd)``
splits an embedding into heads × head features, ``reshape(B, L, -1)`` merges the heads back. These
handlers work on one representation: the channel ids of a tensor laid out over the dims that carry
channels (:attr:`.channels.Channels.axes`), row-major. Attention itself is in :mod:`.heads`.

Rules (each keeps the thinned model computing what the masked one computes)
--------------------------------------------------------------------------
* ``permute``/``transpose``/``swapaxes``/``movedim``: the channel dims move, ids reordered;
  ``unsqueeze`` shifts the channel dims after the new one; ``roll`` along other dims keeps them.
* ``reshape``/``view``/``flatten``/``unflatten`` (and ``nn.Flatten``/``nn.Unflatten``): the ids are
  reshaped with the tensor; the result's channel dims are those along which ids vary. A reshape that
  interleaves channels with another dim so that the ids depend on it (a channel split across tokens)
  is untrackable: its channels are kept, with one warning. A channel dim whose size is written as a
  constant in the code cannot shrink, so every removable unit spans it: ``view(B, L, 4, -1)`` (4
  heads fixed) makes "position j of every head" one unit; ``view(B, L, -1, 16)`` (head_dim fixed)
  makes "head h" one unit. Only one channel dim may shrink (removal must leave a grid): the first
  one given as ``-1`` or computed at run time; the others are spanned too. No shrinkable channel dim
  at all (every size a constant, e.g. ``reshape(n, 768, -1)``): the channels are kept, with a warning.
* Indexing a channel dim with a constant (``qkv[0]`` after ``reshape(B, L, 3, H, hd)``) is allowed
  when every unit spans that dim (so its size never changes); otherwise the channels are kept.
* ``LayerNorm``/``RMSNorm`` (module or ``F.layer_norm``) over the channel dim: removing a channel
  changes the mean and variance of the others, so thinning could not be exact: the channels are
  kept (silently; the exclusion is listed in the graph). Over other dims it passes channels through.
* ``softmax``/``log_softmax`` over a non-channel dim pass channels through.

Each handler returns True when it handled the node (see :mod:`.ops`).
"""

from __future__ import annotations

import operator
from typing import Any

import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from framework.pruning.graph.channels import Channels, channels_from_full
from framework.pruning.graph.elementwise import same_layout
from framework.pruning.graph.groups import FIXED_SIZE_REASON, MIXING_REASON, NORMALISED_REASON
from framework.pruning.graph.state import BuilderState, argument, op_name, tensor_meta


def _dims(value: Any, ndim: int) -> list[int] | None:
    if isinstance(value, int):
        return [value % ndim]
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
        return [v % ndim for v in value]
    return None


# ----------------------------------------------------------------------------- permute
def permute(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    if not isinstance(first, Channels) or not isinstance(meta, TensorMetadata):
        return False
    order = _permutation(node, len(first.shape))
    if order is None or sorted(order) != list(range(len(first.shape))):
        return False
    new_axes = [order.index(a) for a in first.axes]  # where each channel dim goes
    grid = first.grid().permute(sorted(range(len(new_axes)), key=lambda k: new_axes[k]))
    axes = tuple(sorted(new_axes))
    state.values[node] = Channels(grid.flatten().tolist(), axes[0], tuple(meta.shape), axes)
    return True


def unsqueeze(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``unsqueeze(d)``: a new dim of size 1; the channel dims at or after ``d`` move one on."""
    if not isinstance(first, Channels) or not isinstance(meta, TensorMetadata):
        return False
    dim = argument(node, 1, "dim")
    ndim = len(meta.shape)
    if not isinstance(dim, int) or ndim != len(first.shape) + 1:
        return False
    dim %= ndim
    axes = tuple(a + 1 if a >= dim else a for a in first.axes)
    state.values[node] = Channels(list(first.ids), axes[0], tuple(meta.shape), axes)
    return True


def roll(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``roll`` along dims without channels (Swin's shifted windows) moves positions, not channels."""
    if not isinstance(first, Channels) or not isinstance(meta, TensorMetadata):
        return False
    dims = _dims(argument(node, 2, "dims"), len(first.shape))
    if not dims or any(d in first.axes for d in dims):
        return False
    state.values[node] = first
    return True


def _permutation(node: torch.fx.Node, ndim: int) -> list[int] | None:
    """The dims of the result in terms of the input's, for permute/transpose/swapaxes/movedim."""
    name = op_name(node)
    if name == "permute":
        order: Any = node.args[1:] if node.op == "call_method" else node.args[1:2]
        if len(order) == 1 and isinstance(order[0], (tuple, list)):
            order = order[0]
        dims = _dims(list(order), ndim) if order else None
        if dims is None and "dims" in node.kwargs:
            dims = _dims(node.kwargs["dims"], ndim)
        return dims
    if name in ("transpose", "swapaxes", "swapdims"):
        a, b = argument(node, 1, "dim0"), argument(node, 2, "dim1")
        if not isinstance(a, int) or not isinstance(b, int):
            return None
        swapped = list(range(ndim))
        swapped[a % ndim], swapped[b % ndim] = swapped[b % ndim], swapped[a % ndim]
        return swapped
    # movedim / moveaxis
    src, dst = _dims(argument(node, 1, "source"), ndim), _dims(argument(node, 2, "destination"), ndim)
    if src is None or dst is None or len(src) != len(dst):
        return None
    rest = iter(d for d in range(ndim) if d not in src)
    placed = dict(zip(dst, src))
    return [placed[i] if i in placed else next(rest) for i in range(ndim)]


# ----------------------------------------------------------------------------- reshape
def reshape_call(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """view/reshape/flatten/unflatten (function or method) on channels of any layout."""
    return isinstance(first, Channels) and reshape_any(state, node, first, meta, op_name(node))


def reshape_module(
    state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any
) -> bool:
    """``nn.Flatten`` / ``nn.Unflatten`` on channels of any layout."""
    return len(inputs) == 1 and reshape_any(state, node, inputs[0], meta, None, module)


CARRIED = object()  # an output dim that keeps the input's size (unflatten's other dims, a flatten)


def _sizes(
    node: torch.fx.Node, old: tuple[int, ...], shape: tuple[int, ...], name: str | None, module: nn.Module | None
) -> list[Any] | None:
    """Per output dim, the size the code asks for: an int (a literal, or a module attribute: see
    :mod:`.constants`), -1, a graph node (computed at run time) or :data:`CARRIED`. None: the call
    cannot be read."""
    sizes: Any
    if isinstance(module, nn.Unflatten):
        dim, sizes = module.dim % len(old), list(module.unflattened_size)
        return [CARRIED] * dim + sizes + [CARRIED] * (len(old) - dim - 1)
    if name in ("view", "reshape"):
        sizes = node.args[1:] if node.op == "call_method" else node.args[1:2]
        if "shape" in node.kwargs:
            sizes = (node.kwargs["shape"],)
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        if len(sizes) == 1 and isinstance(sizes[0], torch.fx.Node):
            sizes = _leading_shape_plus(sizes[0])
        return list(sizes) if sizes is not None and len(sizes) == len(shape) else None
    if name == "unflatten":
        dim, sizes = argument(node, 1, "dim"), argument(node, 2, "sizes")
        if not isinstance(dim, int) or not isinstance(sizes, (tuple, list)):
            return None
        dim %= len(old)
        return [CARRIED] * dim + list(sizes) + [CARRIED] * (len(old) - dim - 1)
    return [CARRIED] * len(shape)


RUN_TIME = object()  # a size read at run time from a tensor's shape, not from channels: it stays


def _leading_shape_plus(size: torch.fx.Node) -> tuple[Any, ...] | None:
    """``x.shape[:k] + (sizes...)`` (timm's MaxViT restores its input's leading dims so): the
    leading dims as run-time sizes, then the literal ones; None for anything else."""
    if size.op != "call_function" or size.target is not operator.add or len(size.args) != 2:
        return None
    head, tail = size.args
    if not isinstance(tail, tuple) or not all(isinstance(t, int) for t in tail):
        return None
    if not (isinstance(head, torch.fx.Node) and head.op == "call_function" and head.target is operator.getitem):
        return None
    shape, part = head.args
    if not isinstance(part, slice) or part.step is not None or not isinstance(shape, torch.fx.Node):
        return None
    read_shape = shape.op == "call_function" and shape.target is getattr and shape.args[1:] == ("shape",)
    read_size = shape.op == "call_method" and shape.target == "size" and len(shape.args) == 1
    source = tensor_meta(shape.args[0]) if shape.args else None
    if not (read_shape or read_size) or source is None:
        return None
    return (RUN_TIME,) * len(range(len(source.shape))[part]) + tail


def _along(grid: torch.Tensor, k: int) -> list[int]:
    """One id per position along dim ``k`` of ``grid`` (the first of the other dims)."""
    return grid.movedim(k, 0).reshape(grid.shape[k], -1)[:, 0].tolist()


def _can_shrink(state: BuilderState, size: Any, ids: list[int]) -> bool:
    """Whether a dim the code sizes with ``size`` may change length after thinning: inferred (-1),
    kept from the input, read at run time from these very channels, or a module attribute that
    thinning rewrites. A literal, or a size computed from other channels, stays what it is."""
    if size is CARRIED or (type(size) is int and size == -1):
        return True
    if isinstance(size, torch.fx.Node):
        return state.reads_channels(size, ids)
    return state.rewritable(size)


def reshape_any(
    state: BuilderState,
    node: torch.fx.Node,
    source: Channels,
    meta: Any,
    name: str | None,
    module: nn.Module | None = None,
) -> bool:
    if not isinstance(meta, TensorMetadata):
        return False
    old, shape = source.shape, tuple(meta.shape)
    sizes = _sizes(node, old, shape, name, module)
    if sizes is None or len(sizes) != len(shape):
        return False
    full = source.broadcast_grid().expand(old).reshape(shape)
    result = channels_from_full(full)
    if result is None:
        state.unknown(node, MIXING_REASON)
        return True
    grid = result.grid()
    shrinkable = [k for k, a in enumerate(result.axes) if _can_shrink(state, sizes[a], _along(grid, k))]
    if not shrinkable:  # followed, but none of them can go
        op = state.describe(node)
        state.sites[op].append(node.name)
        state.fix(result.ids, op, FIXED_SIZE_REASON, True)
        state.fix(source.ids, op, FIXED_SIZE_REASON, True)
    else:
        for k in range(len(result.axes)):
            if k != shrinkable[0]:
                state.span(grid, k)
    for d, size in enumerate(sizes):
        axis = result.axes.index(d) if d in result.axes else None
        shrinks = bool(shrinkable) and axis == shrinkable[0]
        state.claim(node, size, _along(grid, axis) if shrinks and axis is not None else None)
    state.values[node] = result
    return True


# ----------------------------------------------------------------------------- indexing
def index(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``x[...]`` on channels of any layout: a channel dim indexed with a constant must be spanned."""
    if not isinstance(first, Channels) or not isinstance(meta, TensorMetadata):
        return False
    entries: Any = node.args[1]
    if not isinstance(entries, tuple):
        entries = (entries,)
    if any(isinstance(i, torch.fx.Node) for i in entries):
        return _gather(state, node, first, meta, entries)
    ndim = len(first.shape)
    if Ellipsis in entries:
        at = entries.index(Ellipsis)
        fill = ndim - (len(entries) - 1 - sum(i is None for i in entries))
        entries = entries[:at] + (slice(None),) * fill + entries[at + 1 :]
    dim = 0
    grid_index: list[Any] = []
    for entry in entries:
        if entry is None:
            grid_index.append(None)
            continue
        if not isinstance(entry, (int, slice)):
            return False
        if dim in first.axes and entry != slice(None):
            if not state.spans(first.grid(), first.axes.index(dim)):
                return False
        grid_index.append(entry)
        dim += 1
    full = first.broadcast_grid().expand(first.shape)[tuple(grid_index)]
    if tuple(full.shape) != tuple(meta.shape):
        return False
    result = channels_from_full(full)
    if result is None:
        return False
    state.values[node] = result
    return True


def _gather(state: BuilderState, node: torch.fx.Node, first: Channels, meta: TensorMetadata, entries: tuple) -> bool:
    """``table[index]`` with one integer tensor on a dim without channels (timm's Swin reads its
    relative-position bias table so): the positions are gathered, each channel stays whole."""
    tensors = [d for d, e in enumerate(entries) if isinstance(e, torch.fx.Node)]
    if len(tensors) != 1 or any(e != slice(None) for e in entries if not isinstance(e, torch.fx.Node)):
        return False
    at = tensors[0]
    index_meta = tensor_meta(entries[at])
    if index_meta is None or index_meta.dtype not in (torch.long, torch.int) or at in first.axes:
        return False
    added = len(index_meta.shape) - 1
    shape = tuple(meta.shape)
    axes = tuple(a + added if a > at else a for a in first.axes)
    if any(shape[a] != first.shape[b] for a, b in zip(axes, first.axes)):
        return False
    state.values[node] = Channels(list(first.ids), axes[0], shape, axes)
    return True


def unbind(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    if not isinstance(first, Channels):
        return False
    dim = argument(node, 1, "dim", 0)
    if not isinstance(dim, int) or not isinstance(meta, (tuple, list)):
        return False
    dim %= len(first.shape)
    if dim in first.axes and not state.spans(first.grid(), first.axes.index(dim)):
        return False
    full = first.broadcast_grid().expand(first.shape)
    parts = [channels_from_full(full.select(dim, i)) for i in range(full.shape[dim])]
    if any(p is None for p in parts):
        return False
    state.values[node] = parts
    return True


# ----------------------------------------------------------------------------- normalisation, softmax
def normalise(state: BuilderState, node: torch.fx.Node, source: Channels, meta: Any, count: int | None) -> bool:
    """A LayerNorm/RMSNorm over the last ``count`` dims: channels among them are kept whole."""
    if not isinstance(meta, TensorMetadata) or count is None:
        return False
    ndim = len(source.shape)
    normalised = set(range(ndim - count, ndim))
    state.values[node] = Channels(source.ids, source.dim, tuple(meta.shape), source.axes)
    if normalised & set(source.axes):
        state.fix(source.ids, state.describe(node), NORMALISED_REASON, False)
    return True


def layer_norm_call(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    if not isinstance(first, Channels):
        return False
    shape = argument(node, 1, "normalized_shape")
    return normalise(state, node, first, meta, len(shape) if isinstance(shape, (tuple, list)) else None)


def layer_norm_module(
    state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any
) -> bool:
    if not isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or len(inputs) != 1 or len(node.args) != 1:
        return False
    return normalise(state, node, inputs[0], meta, len(module.normalized_shape))


def softmax_call(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """softmax/log_softmax over a dim that carries no channels."""
    if not isinstance(first, Channels):
        return False
    dim = argument(node, 1, "dim")
    if isinstance(dim, int) and isinstance(meta, TensorMetadata) and dim % len(first.shape) not in first.axes:
        return same_layout(state, node, first, meta)
    return False


def softmax_module(
    state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any
) -> bool:
    if not (isinstance(module, nn.Softmax) and len(inputs) == 1 and isinstance(meta, TensorMetadata)):
        return False
    dim = module.dim
    if isinstance(dim, int) and dim % len(inputs[0].shape) not in inputs[0].axes:
        return same_layout(state, node, inputs[0], meta)
    return False
