"""Handlers of ops that keep each channel apart: activations and casts pass channels through,
element-wise arithmetic couples its operands position by position, reductions over other dims keep
them, and parameters met in such ops (layer scales, position embeddings) go with the channels.

Every handler takes the walk's state, the node, the channels of its first argument (``first``) and
its shape record (``meta``), and returns True when it handled the node (see :mod:`.ops`).
"""

from __future__ import annotations

from typing import Any

import torch.fx
from torch.fx.passes.shape_prop import TensorMetadata

from framework.pruning.graph.channels import Channels
from framework.pruning.graph.groups import PARAM
from framework.pruning.graph.state import BuilderState, tensor_meta


def pass_channels(state: BuilderState, node: torch.fx.Node, source: Channels, meta: TensorMetadata) -> bool:
    """Channels pass through unchanged (same count along the same dim)."""
    shape = tuple(meta.shape)
    if len(shape) != len(source.shape) or shape[source.dim] != len(source.ids):
        return False
    state.values[node] = Channels(source.ids, source.dim, shape)
    return True


def same_layout(state: BuilderState, node: torch.fx.Node, source: Channels, meta: Any) -> bool:
    """Channels spread over several dims pass through unchanged (same sizes along those dims)."""
    shape = tuple(meta.shape)
    if len(shape) != len(source.shape) or any(shape[a] != source.shape[a] for a in source.axes):
        return False
    state.values[node] = Channels(source.ids, source.dim, shape, source.axes)
    return True


def pass_through(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """An op that acts on each channel alone (activation, dropout, pooling, a cast) of one tensor."""
    if not (isinstance(first, Channels) and isinstance(meta, TensorMetadata)) or not state.only_first_is_tensor(node):
        return False
    if first.multi:
        return same_layout(state, node, first, meta)
    return pass_channels(state, node, first, meta)


def binary(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """add/sub/mul/div (and in-place forms): the operands' channels coupled position by position
    after broadcasting; an operand broadcast along the channels (size 1) is left alone."""
    if not (isinstance(first, Channels) and isinstance(meta, TensorMetadata)):
        return False
    out_shape = tuple(meta.shape)
    operands = [a for a in list(node.args[:2]) + [node.kwargs.get("other")] if a is not None]
    parameters: list[torch.fx.Node] = []
    values: list[Channels] = []
    constants: list[Channels] = []
    for operand in operands:
        if isinstance(operand, (int, float, bool)):
            continue
        if isinstance(operand, torch.fx.Node) and operand in state.param_origin:
            parameters.append(operand)
            continue
        value = state.values.get(operand) if isinstance(operand, torch.fx.Node) else None
        if not isinstance(value, Channels):
            if isinstance(operand, torch.fx.Node) and tensor_meta(operand) is None:
                continue  # a python number computed in the graph
            return False
        if isinstance(operand, torch.fx.Node) and operand.op == "get_attr":
            constants.append(value)  # a buffer (a mask, a bias table): looked at once the channels are known
        else:
            values.append(value)
    if values:  # a constant broadcast along the channels (size 1 there) does not touch them
        axes_of = [tuple(a + len(out_shape) - len(v.shape) for a in v.axes) for v in values]
        for constant in constants:
            offset = len(out_shape) - len(constant.shape)
            if not all(a < offset or constant.shape[a - offset] == 1 for a in axes_of[0]):
                values.append(constant)
    else:
        values = constants
    return _couple_operands(state, node, out_shape, values, parameters)


def _couple_operands(
    state: BuilderState,
    node: torch.fx.Node,
    out_shape: tuple[int, ...],
    values: list[Channels],
    parameters: list[torch.fx.Node],
) -> bool:
    channel_dim: int | None = None
    channel_axes: tuple[int, ...] | None = None
    full: list[Channels] = []
    for value in values:
        offset = len(out_shape) - len(value.shape)
        if not value.multi and len(value.ids) == 1 and out_shape[value.dim + offset] != 1:
            # broadcast along channels: it feeds every output channel, so it keeps its one channel
            state.fix(value.ids, state.describe(node), "broadcast along channels", False)
            continue
        axes = tuple(a + offset for a in value.axes)
        if channel_axes is not None and channel_axes != axes:
            return False
        if value.multi and any(out_shape[a + offset] != value.shape[a] for a in value.axes):
            return False
        channel_dim, channel_axes = value.dim + offset, axes
        full.append(value)
    if not full or channel_dim is None:
        return False
    for value in full[1:]:
        if len(value.ids) != len(full[0].ids):
            return False
        state.uf.unite(full[0].ids, value.ids)
    for parameter in parameters:
        if attach_parameter(state, parameter, full[0], len(out_shape), channel_dim) is False:
            return False
    state.values[node] = Channels(full[0].ids, channel_dim, out_shape, channel_axes or ())
    return True


def reduce(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """mean/sum/amax/amin over dims other than the channel dim."""
    if not (isinstance(first, Channels) and isinstance(meta, TensorMetadata)):
        return False
    given: Any = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if given is None:
        return False
    dims = [given] if isinstance(given, int) else list(given)
    if not all(isinstance(d, int) for d in dims):
        return False
    ndim = len(first.shape)
    dims = [d % ndim for d in dims]
    if first.dim in dims:
        return False
    keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
    dim = first.dim if keepdim else first.dim - sum(d < first.dim for d in dims)
    if tuple(meta.shape)[dim] != len(first.ids):
        return False
    state.values[node] = Channels(first.ids, dim, tuple(meta.shape))
    return True


# ----------------------------------------------------------------------------- parameters read in forward
def read_parameter(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``param.expand(...)`` of a parameter read in forward: followed like the parameter itself."""
    source = node.args[0]
    if not (isinstance(source, torch.fx.Node) and source in state.param_origin) or not isinstance(meta, TensorMetadata):
        return False
    name, shape, _ = state.param_origin[source]
    state.param_origin[node] = (name, shape, len(meta.shape) - len(shape))
    channels = state.fresh(meta, 1 if len(meta.shape) >= 2 else 0)
    state.fix(channels.ids, f"tensor attribute '{name}'", "a constant read in forward", False)
    state.values[node] = channels
    return True


def attach_parameter(
    state: BuilderState, operand: torch.fx.Node, channels: Channels, out_ndim: int, channel_dim: int
) -> bool | None:
    """A parameter (``get_attr``, possibly ``expand``-ed) that meets ``channels`` in an element-wise op
    or a concatenation: True when it was attached as a per-channel parameter (its slices along the
    channel dim go with the channels), None when it is broadcast along the channels (size 1, not
    touched), False when it cannot be followed."""
    origin = state.param_origin.get(operand)
    if origin is None:
        return False
    name, shape, offset = origin  # parameter name, its shape, leading dims added by broadcasting/expand
    axis = channel_dim - (out_ndim - len(shape)) if offset is None else channel_dim - offset
    if axis < 0 or axis >= len(shape) or shape[axis] == 1:
        return None
    if shape[axis] != len(channels.ids) or channels.multi:
        return False
    if state.param_dims.setdefault(name, axis) != axis:
        return False
    state.attach(channels.ids, name, PARAM)
    return True
