"""Dependency groups: which channels across layers must be removed together.

Removing output channel ``c`` of a convolution only yields a smaller network that computes the same
function if everything else that touches channel ``c`` of that tensor goes with it. This module reads
the model's ``torch.fx`` graph (shapes from :class:`torch.fx.passes.shape_prop.ShapeProp` on an
example input) and returns those sets.

Vocabulary
----------
*coupled channel*
    One unit of removal: a set of (module, role, channel index) *members* that are removed together.
    Roles: ``"out"`` (a Conv/ConvTranspose/Linear filter, i.e. weight rows **and** the bias entry),
    ``"in"`` (a consumer's input channel: weight columns), ``"norm"`` (a BatchNorm/InstanceNorm channel:
    ``γ``, ``β``, running mean and variance), ``"param"`` (slices of a parameter read in forward along its
    channel dim: a layer scale, a class token, a position embedding, the q/k/v rows of an
    ``nn.MultiheadAttention``'s ``in_proj_weight``; ``DependencyGraph.param_dims`` gives the dim).
*dependency group*
    The coupled channels that are ranked against each other with one target: all channels that share a
    (module, role), e.g. the 16 channels of a ResNet stage's residual stream, or every channel of a
    DenseNet block, whose concatenations one conv reads at once. Its ``kind`` is ``"head"`` for the
    heads of an attention block (ranked by ``structure=head`` only) and ``"channel"`` otherwise.

How channels propagate (each tensor in the graph carries one id per channel along its channel
dimension: 1 for conv-style tensors ``[N, C, ...]``, the last one for a Linear's output)
-----------------------------------------------------------------------------------------------
* Conv/ConvTranspose/Linear produce fresh channels (their ``out`` members) and consume their input's
  (``in`` members). A module called twice couples the channels of both calls.
* Grouped convs (``1 < groups < in_channels``): channel ``p`` of every conv group is coupled with
  channel ``p`` of the other groups, on both sides, so every group loses the same count and ``groups``
  stays valid. Depthwise convs (one input channel per group, any multiplier) pass the channel through:
  input channel ``c`` is coupled with the ``out`` channels of group ``c``; thinning lowers ``groups``.
* BatchNorm / InstanceNorm, activations, dropout, identity, pooling, adaptive pooling, interpolation,
  spatial padding and slicing, reductions over non-channel dims, torchvision's ``stochastic_depth``:
  pass channels through.
* ``add``/``sub``/``mul``/``div`` (and their in-place forms): channels of the operands are coupled
  position by position after broadcasting; this covers residual adds and squeeze-excitation gates
  (``[N, C, 1, 1] * [N, C, H, W]``). An operand broadcast along channels (size 1) is left alone.
* ``torch.cat`` along channels concatenates the channel lists (each part keeps its own offsets, so
  thinning needs no constant to change); along another dim it couples the parts like ``add``.
* ``torch.chunk(x, n, dim=channels)`` couples position ``p`` of every chunk (each chunk loses the same
  count, so the chunks computed at run time stay the matching ones); it needs ``C % n == 0``.
* ``flatten``/``view``/``reshape`` that merge the channel dim with the dims after it: feature ``j`` of
  the result belongs to channel ``j // (H·W)``, so a Linear after ``flatten`` loses its block of H·W
  columns with each channel. Only when the new shape is given as ``-1`` or computed at run time.
* Transformers (:mod:`.layouts`): permute/transpose, reshapes into heads and back, LayerNorm (over the
  channels: kept, since removing one changes the others' statistics), per-channel parameters met in
  element-wise ops or concatenations, ``F.scaled_dot_product_attention`` (heads, GQA),
  ``nn.MultiheadAttention`` and Swin's window attention (heads; embedding kept).
* Zero padding of channels (``F.pad`` with channel pads, the CIFAR ResNet option-A shortcut): the
  padded channels are constants whose count is fixed in the code, so they are never removed; the
  channels that flow through keep their positions, so they can be.

Never removed ("fixed")
-----------------------
The network input's channels (image planes), every tensor the model returns (class scores), padded
constant channels, tensors read straight from parameters or buffers (``get_attr``), and everything
coupled to them.

Unknown ops
-----------
An op whose effect on channels is not listed above (``channel_shuffle``, ``pixel_shuffle``, ``einsum``,
GroupNorm, a multi-channel PReLU, custom autograd functions, a split with constant sizes, a slice
along channels, a reshape that mixes channels with another dim, any other call) is
**never assumed element-wise**: the channels that flow into
and out of it are fixed, and :func:`build_dependency_graph` emits one ``warnings.warn`` per op naming the
op and the layers that are kept whole because of it. A model with nothing prunable left raises
:class:`PruningError` in the pruner; a model torch.fx cannot trace raises a one-line PruningError.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from framework.errors import PruningError
from framework.pruning.graph.fx import CONV_LINEAR, CONVS, NORMS, POOLS, trace, unwrap
from framework.pruning.graph.layouts import PARAM, STRUCTURAL_REASONS, LayoutHandlers, _Channels
from framework.pruning.spec import CHANNEL, FILTER

OUT, IN, NORM = "out", "in", "norm"
ROLES = (OUT, IN, NORM, PARAM)  # PARAM: slices of a parameter read in forward (layer scale, in_proj rows)
# which structure of a layer's weight a member's role is
ROLE_STRUCTURE = {OUT: FILTER, IN: CHANNEL}

# Modules and functions that act on each channel independently (or only on other dims).
_PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    *POOLS,
    nn.LPPool1d,
    nn.LPPool2d,
    nn.Upsample,
    nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d,
    nn.ZeroPad2d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
    nn.ReflectionPad1d,
    nn.ReflectionPad2d,
    nn.ReplicationPad1d,
    nn.ReplicationPad2d,
)
_PASS_FUNCTIONS = {
    F.relu,
    F.relu_,
    torch.relu,
    torch.relu_,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.celu,
    F.gelu,
    F.silu,
    F.mish,
    torch.sigmoid,
    F.sigmoid,
    torch.tanh,
    F.tanh,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.softplus,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    F.alpha_dropout,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
    F.interpolate,
    torch.abs,
    torch.exp,
    torch.neg,
    torch.square,
    torch.sqrt,
    torch.clamp,
    torch.clip,
}
# Functions of other libraries known to act per sample or per channel, by (module, name): importing
# them here would make torch-only pruning depend on those libraries.
_PASS_FOREIGN_FUNCTIONS = {
    ("torchvision.ops.stochastic_depth", "stochastic_depth"),  # scales whole samples (or is identity)
}
_PASS_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "clamp",
    "clamp_",
    "clip",
    "abs",
    "neg",
    "exp",
    "square",
    "sqrt",
    "contiguous",
    "clone",
    "detach",
    "float",
    "double",
    "half",
    "to",
    "type_as",
}
_BINARY_FUNCTIONS = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.maximum,
    torch.minimum,
}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin"}
_RESHAPE_METHODS = {"view", "reshape", "flatten"}
# Calls that only read metadata (sizes); their results are not tensors with channels.
_METADATA_METHODS = {"size", "dim", "numel"}


class Member(NamedTuple):
    """Channels ``indices`` of ``module`` in ``role`` (``out`` / ``in`` / ``norm``). A named tuple:
    large models have tens of thousands of them."""

    module: str
    role: str
    indices: tuple[int, ...]


@dataclass
class CoupledChannel:
    """A set of members removed together (one channel of every tensor it runs through)."""

    members: tuple[Member, ...]
    fixed: bool = False  # True: never removed (network input/output, constants, unknown ops)
    head: bool = False  # True: a whole attention head (removed by structure=head only)

    def of(self, role: str) -> list[Member]:
        return [m for m in self.members if m.role == role]


@dataclass
class DependencyGroup:
    """Coupled channels ranked together under one target (they share a layer)."""

    name: str  # the first producer layer, for messages
    channels: list[CoupledChannel]

    @property
    def prunable(self) -> list[CoupledChannel]:
        return [c for c in self.channels if not c.fixed]

    @property
    def kind(self) -> str:
        """``"head"`` for the heads of an attention block, ``"channel"`` otherwise."""
        return "head" if self.channels and all(c.head for c in self.channels) else "channel"


@dataclass
class Exclusion:
    """Channels fixed because of ``op``: ``reason`` says why, ``layers`` which layers it keeps whole."""

    op: str
    reason: str
    layers: tuple[str, ...]
    warned: bool
    sites: tuple[str, ...] = ()  # the graph nodes of an unknown op


@dataclass
class DependencyGraph:
    """The result of :func:`build_dependency_graph`."""

    groups: list[DependencyGroup]
    exclusions: list[Exclusion]
    # (module name, role) -> channel count of that role (out/in channels, norm features)
    widths: dict[tuple[str, str], int]
    modules: dict[str, nn.Module] = field(repr=False)
    # PARAM members: parameter name -> the dim its slices are taken along
    param_dims: dict[str, int] = field(default_factory=dict)
    parameters: dict[str, nn.Parameter] = field(default_factory=dict, repr=False)

    def channels(self) -> Iterable[CoupledChannel]:
        for group in self.groups:
            yield from group.channels


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, count: int) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return list(range(start, start + count))

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _describe(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} '{node.target}'"
    # functions and methods are named by kind (one warning for all view() calls); the graph
    # nodes where they occur are listed in Exclusion.sites
    if node.op == "call_method":
        return f"method .{node.target}()"
    target = getattr(node.target, "__name__", str(node.target))
    return f"{target}()"


def _tensor_meta(node: Any):
    return node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None


class _Builder(LayoutHandlers):
    """Walks the graph once; every tensor gets channel ids, every layer channel a member."""

    def __init__(self, graph: torch.fx.Graph, modules: dict[str, nn.Module]):
        self.graph = graph
        self.modules = modules
        self.uf = _UnionFind()
        self.values: dict[torch.fx.Node, Any] = {}  # node -> _Channels | list[_Channels] (tuples)
        self.members: list[tuple[int, str, str, int]] = []  # (id, module, role, channel index)
        self.module_ids: dict[tuple[str, str], list[int]] = {}
        self.fixed: dict[int, tuple[str, str, bool]] = {}  # id -> (op, reason, warn)
        self.sites: dict[str, list[str]] = defaultdict(list)  # unknown op -> graph nodes where it occurs
        self.head_ids: list[int] = []  # one id of every attention head unit
        self.param_dims: dict[str, int] = {}  # parameter read in forward -> its channel dim
        # get_attr parameters (and their expand()s): node -> (name, shape, leading dims added or None)
        self.param_origin: dict[torch.fx.Node, tuple[str, tuple[int, ...], int | None]] = {}

    # ----------------------------------------------------------------------------- helpers
    def fresh(self, meta: TensorMetadata, dim: int) -> _Channels:
        shape = tuple(meta.shape)
        return _Channels(self.uf.new(shape[dim] if shape else 0), dim, shape)

    def fix(self, ids: Iterable[int], op: str, reason: str, warn: bool) -> None:
        for i in ids:
            self.fixed.setdefault(i, (op, reason, warn))

    def tensors_in(self, value: Any) -> list[_Channels]:
        """Every channel-carrying value inside args (nested tuples/lists/dicts)."""
        found: list[_Channels] = []
        if isinstance(value, torch.fx.Node):
            v = self.values.get(value)
            if isinstance(v, _Channels):
                found.append(v)
            elif isinstance(v, list):
                found.extend(v)
        elif isinstance(value, (tuple, list)):
            for item in value:
                found.extend(self.tensors_in(item))
        elif isinstance(value, dict):
            for item in value.values():
                found.extend(self.tensors_in(item))
        return found

    def unknown(self, node: torch.fx.Node, reason: str, warn: bool = True) -> None:
        """Fix every channel flowing into and out of ``node``."""
        op = _describe(node, self.modules)
        self.sites[op].append(node.name)
        for channels in self.tensors_in(list(node.args) + list(node.kwargs.values())):
            self.fix(channels.ids, op, reason, warn)
        meta = node.meta.get("tensor_meta")
        inputs = self.tensors_in(list(node.args) + list(node.kwargs.values()))
        # an output shaped like an input (a fused attention call on [B, H, W, C]) keeps its channel dim
        like = next(
            (
                c.dim
                for c in inputs
                if not c.multi and isinstance(meta, TensorMetadata) and len(c.shape) == len(meta.shape) and c.dim != 1
            ),
            None,
        )
        outputs = self._fresh_outputs(meta, like)
        if outputs is not None:
            for channels in outputs if isinstance(outputs, list) else [outputs]:
                self.fix(channels.ids, op, reason, warn)
            self.values[node] = outputs

    def _fresh_outputs(self, meta, dim: int | None = None):
        if isinstance(meta, TensorMetadata):
            if dim is not None:
                return self.fresh(meta, dim)
            return self.fresh(meta, 1 if len(meta.shape) >= 2 else 0) if len(meta.shape) >= 1 else None
        if isinstance(meta, (tuple, list)) and meta and all(isinstance(m, TensorMetadata) for m in meta):
            return [self.fresh(m, 1 if len(m.shape) >= 2 else 0) for m in meta if len(m.shape) >= 1]
        return None

    def attach(self, ids: list[int], module: str, role: str) -> None:
        """Record ``ids`` as the channels of (module, role); a second call couples them."""
        key = (module, role)
        known = self.module_ids.get(key)
        if known is None:
            self.module_ids[key] = list(ids)
            for index, i in enumerate(ids):
                self.members.append((i, module, role, index))
        else:
            for a, b in zip(known, ids):
                self.uf.union(a, b)

    # ----------------------------------------------------------------------------- walk
    def run(self) -> None:
        for node in self.graph.nodes:
            handler = getattr(self, f"_op_{node.op}")
            handler(node)

    def _op_placeholder(self, node):
        meta = node.meta.get("tensor_meta")
        outputs = self._fresh_outputs(meta)
        if outputs is not None:
            for channels in outputs if isinstance(outputs, list) else [outputs]:
                self.fix(channels.ids, "the network input", "its channels are the input planes", False)
            self.values[node] = outputs

    def _op_get_attr(self, node):
        meta = node.meta.get("tensor_meta")
        if isinstance(meta, TensorMetadata):
            channels = self.fresh(meta, 1 if len(meta.shape) >= 2 else 0)
            self.fix(channels.ids, f"tensor attribute '{node.target}'", "a constant read in forward", False)
            self.values[node] = channels
            owner, _, attribute = node.target.rpartition(".")
            if isinstance(getattr(self.modules.get(owner), attribute, None), nn.Parameter):
                # followed where it meets channels element-wise (layer scale, position embedding)
                self.param_origin[node] = (node.target, tuple(meta.shape), None)

    def _op_output(self, node):
        for channels in self.tensors_in(node.args):
            self.fix(channels.ids, "the model output", "its channels are what the model returns", False)

    def _op_call_module(self, node):
        module = self.modules[node.target]
        inputs = self.tensors_in(node.args[:1])
        meta = node.meta.get("tensor_meta")
        if any(value.multi for value in inputs):
            pass  # channels spread over several dims: only the layout handlers below know them
        elif (
            isinstance(module, CONV_LINEAR)
            and len(inputs) == 1
            and isinstance(meta, TensorMetadata)
            and not node.kwargs
            and len(node.args) == 1
        ):
            if self._layer(node, module, inputs[0], meta):
                return
        elif isinstance(module, NORMS) and len(inputs) == 1 and len(node.args) == 1 and inputs[0].dim == 1:
            self.attach(inputs[0].ids, node.target, NORM)
            self.values[node] = inputs[0]
            return
        elif isinstance(module, nn.PReLU) and module.num_parameters == 1 and len(inputs) == 1:
            self.values[node] = inputs[0]
            return
        elif isinstance(module, _PASS_MODULES) and len(inputs) == 1 and isinstance(meta, TensorMetadata):
            if self._pass(node, inputs[0], meta):
                return
        elif isinstance(module, nn.Flatten) and len(inputs) == 1 and isinstance(meta, TensorMetadata):
            if module.end_dim in (-1, len(inputs[0].shape) - 1) and self._merge_trailing(
                node, inputs[0], meta, module.start_dim
            ):
                return
        if inputs or isinstance(module, nn.MultiheadAttention):
            if self.layout_module(node, module, inputs, meta):
                return
        self.unknown(node, "its effect on channels is not known")

    def _layer(self, node, module, source: _Channels, meta: TensorMetadata) -> bool:
        name = node.target
        wanted = len(source.shape) - 1 if isinstance(module, nn.Linear) else 1
        if source.dim != wanted and len(source.shape) > wanted:
            source = self._refit(source, wanted) or source
        if isinstance(module, nn.Linear):
            if source.dim != len(source.shape) - 1:
                return False
            out_dim = len(meta.shape) - 1
        else:
            if source.dim != 1 or len(meta.shape) < 2:
                return False
            out_dim = 1
        groups = getattr(module, "groups", 1)
        if isinstance(module, CONVS) and module.transposed and groups != 1:
            return False
        in_ids = source.ids
        out = self.fresh(meta, out_dim)
        if groups > 1:
            per_in, per_out = len(in_ids) // groups, len(out.ids) // groups
            if per_in == 1:  # depthwise: input channel c flows into the filters of group c
                for c in range(groups):
                    for q in range(per_out):
                        self.uf.union(in_ids[c], out.ids[c * per_out + q])
            else:  # each group must lose the same positions for `groups` to stay valid
                for p in range(per_in):
                    for g in range(1, groups):
                        self.uf.union(in_ids[p], in_ids[g * per_in + p])
                for q in range(per_out):
                    for g in range(1, groups):
                        self.uf.union(out.ids[q], out.ids[g * per_out + q])
        self.attach(in_ids, name, IN)
        self.attach(out.ids, name, OUT)  # a shared layer's second call is coupled to its first
        self.values[node] = out
        return True

    def _refit(self, source: _Channels, dim: int) -> _Channels | None:
        """Channels kept whole by an unknown op carry no information about which dim holds them:
        a layer that reads them along ``dim`` gets fresh kept ids there (None if some are removable)."""
        reasons = [self.fixed.get(i) for i in source.ids]
        if not reasons or any(r is None for r in reasons):
            return None
        channels = _Channels(self.uf.new(source.shape[dim]), dim, source.shape)
        self.fix(channels.ids, *reasons[0])
        return channels

    def _pass(self, node, source: _Channels, meta: TensorMetadata) -> bool:
        """Channels pass through unchanged (same count along the same dim)."""
        shape = tuple(meta.shape)
        if len(shape) != len(source.shape) or shape[source.dim] != len(source.ids):
            return False
        self.values[node] = _Channels(source.ids, source.dim, shape)
        return True

    def _merge_trailing(self, node, source: _Channels, meta: TensorMetadata, start_dim: int) -> bool:
        """``flatten(start_dim)``-like reshape. Feature j of the merged dim maps to channel j // inner."""
        shape, old = tuple(meta.shape), source.shape
        start = start_dim % len(old)
        if start > source.dim:  # the channel dim itself is untouched
            if shape[: source.dim + 1] != old[: source.dim + 1]:
                return False
            self.values[node] = _Channels(source.ids, source.dim, shape)
            return True
        if start != source.dim or len(shape) != start + 1 or shape[:start] != old[:start]:
            return False
        inner = math.prod(old[start + 1 :])
        if shape[start] != len(source.ids) * inner:
            return False
        ids = source.ids if inner == 1 else [i for i in source.ids for _ in range(inner)]
        self.values[node] = _Channels(ids, start, shape)
        return True

    def _op_call_function(self, node):
        self._call(node, node.target, None)

    def _op_call_method(self, node):
        self._call(node, None, node.target)

    def _call(self, node, function, method):
        meta = node.meta.get("tensor_meta")
        args = node.args
        first = self.values.get(args[0]) if args and isinstance(args[0], torch.fx.Node) else None
        if not self.tensors_in(list(args) + list(node.kwargs.values())) and meta is None:
            return  # no tensor with channels goes in or comes out (sizes, arithmetic on ints)
        if method in _METADATA_METHODS or (function is getattr and meta is None):
            return
        if method == "expand" and args[0] in self.param_origin and isinstance(meta, TensorMetadata):
            name, shape, _ = self.param_origin[args[0]]
            self.param_origin[node] = (name, shape, len(meta.shape) - len(shape))
            channels = self.fresh(meta, 1 if len(meta.shape) >= 2 else 0)
            self.fix(channels.ids, f"tensor attribute '{name}'", "a constant read in forward", False)
            self.values[node] = channels
            return
        if isinstance(first, _Channels) and first.multi:
            if self.layout_call(node, function, method, first, meta):
                return
            if (
                (function in _PASS_FUNCTIONS or method in _PASS_METHODS)
                and self._only_first_is_tensor(node)
                and isinstance(meta, TensorMetadata)
                and self._same_layout(node, first, meta)
            ):
                return
            if (
                (function in _BINARY_FUNCTIONS or method in _BINARY_METHODS)
                and isinstance(meta, TensorMetadata)
                and self._binary(node, meta)
            ):
                return
            self.unknown(node, "its effect on channels is not known")
            return
        if function is operator.getitem:
            if isinstance(first, list):
                if isinstance(args[1], int):
                    self.values[node] = first[args[1]]
                    return
            elif (
                isinstance(first, _Channels)
                and isinstance(meta, TensorMetadata)
                and self._getitem(node, first, args[1], meta)
            ):
                return
            elif first is None:
                return
            if isinstance(first, _Channels) and self.layout_call(node, function, method, first, meta):
                return
            self.unknown(node, "indexes along the channel dim with constants fixed in the code")
            return
        if isinstance(first, _Channels) and isinstance(meta, TensorMetadata):
            foreign = (getattr(function, "__module__", None), getattr(function, "__name__", None))
            known = function in _PASS_FUNCTIONS or method in _PASS_METHODS or foreign in _PASS_FOREIGN_FUNCTIONS
            if known and self._only_first_is_tensor(node):
                if self._pass(node, first, meta):
                    return
            if function in _BINARY_FUNCTIONS or method in _BINARY_METHODS:
                if self._binary(node, meta):
                    return
            if function in _REDUCE_FUNCTIONS or method in _REDUCE_METHODS:
                if self._reduce(node, first, meta):
                    return
            if function is torch.flatten or method == "flatten":
                start = node.kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
                end = node.kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
                if (
                    isinstance(start, int)
                    and end in (-1, len(first.shape) - 1)
                    and self._merge_trailing(node, first, meta, start)
                ):
                    return
            if method in ("view", "reshape") or function is torch.reshape:
                if self._reshape(node, first, meta):
                    return
            if function is F.pad and self._pad(node, first, meta):
                return
        if function is torch.cat or function is torch.concat:
            if self._cat(node, meta):
                return
        if (function is torch.chunk or method == "chunk") and isinstance(first, _Channels):
            if self._chunk(node, first, meta):
                return
        if isinstance(first, _Channels) and self.layout_call(node, function, method, first, meta):
            return
        reason = "its effect on channels is not known"
        if function is torch.split or method == "split":
            reason = "its split sizes are fixed in the code"
        self.unknown(node, reason)

    def _only_first_is_tensor(self, node) -> bool:
        return not self.tensors_in(list(node.args[1:]) + list(node.kwargs.values()))

    def _getitem(self, node, source: _Channels, index, meta) -> bool:
        if not isinstance(index, tuple):
            index = (index,)
        if any(i is None or isinstance(i, torch.fx.Node) for i in index):
            return False
        ndim = len(source.shape)
        if Ellipsis in index:
            at = index.index(Ellipsis)
            fill = ndim - (len(index) - 1)
            index = index[:at] + (slice(None),) * fill + index[at + 1 :]
        if len(index) > ndim:
            return False
        entries = list(index) + [slice(None)] * (ndim - len(index))
        if entries[source.dim] != slice(None) or not all(isinstance(e, (slice, int)) for e in entries):
            return False
        dim = source.dim - sum(isinstance(e, int) for e in entries[: source.dim])
        if tuple(meta.shape)[dim] != len(source.ids):
            return False
        self.values[node] = _Channels(source.ids, dim, tuple(meta.shape))
        return True

    def _binary(self, node, meta: TensorMetadata) -> bool:
        out_shape = tuple(meta.shape)
        operands = [a for a in list(node.args[:2]) + [node.kwargs.get("other")] if a is not None]
        channel_dim, channel_axes, full, parameters, constants = None, None, [], [], []
        values = []
        for operand in operands:
            if isinstance(operand, (int, float, bool)):
                continue
            if isinstance(operand, torch.fx.Node) and operand in self.param_origin:
                parameters.append(operand)
                continue
            value = self.values.get(operand) if isinstance(operand, torch.fx.Node) else None
            if not isinstance(value, _Channels):
                if isinstance(operand, torch.fx.Node) and _tensor_meta(operand) is None:
                    continue  # a python number computed in the graph
                return False
            if operand.op == "get_attr":  # a buffer (a mask, a bias table): looked at once the channels are known
                constants.append(value)
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
        for value in values:
            offset = len(out_shape) - len(value.shape)
            if not value.multi and len(value.ids) == 1 and out_shape[value.dim + offset] != 1:
                # broadcast along channels: it feeds every output channel, so it keeps its one channel
                self.fix(value.ids, _describe(node, self.modules), "broadcast along channels", False)
                continue
            axes = tuple(a + offset for a in value.axes)
            if channel_axes is not None and channel_axes != axes:
                return False
            if value.multi and any(out_shape[a + offset] != value.shape[a] for a in value.axes):
                return False
            channel_dim, channel_axes = value.dim + offset, axes
            full.append(value)
        if not full:
            return False
        for value in full[1:]:
            if len(value.ids) != len(full[0].ids):
                return False
            for a, b in zip(full[0].ids, value.ids):
                self.uf.union(a, b)
        for parameter in parameters:
            if self.attach_parameter(parameter, full[0], len(out_shape), channel_dim) is False:
                return False
        self.values[node] = _Channels(full[0].ids, channel_dim, out_shape, channel_axes)
        return True

    def _reduce(self, node, source: _Channels, meta) -> bool:
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if dims is None:
            return False
        dims = [dims] if isinstance(dims, int) else list(dims)
        if not all(isinstance(d, int) for d in dims):
            return False
        ndim = len(source.shape)
        dims = [d % ndim for d in dims]
        if source.dim in dims:
            return False
        keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        dim = source.dim if keepdim else source.dim - sum(d < source.dim for d in dims)
        if tuple(meta.shape)[dim] != len(source.ids):
            return False
        self.values[node] = _Channels(source.ids, dim, tuple(meta.shape))
        return True

    def _reshape(self, node, source: _Channels, meta) -> bool:
        """view/reshape: allowed when it is a flatten of the dims from the channel dim on, or keeps
        the dims up to the channel dim, and the sizes from the channel dim on are -1 or computed at
        run time (a constant would still hold the old channel count after thinning)."""
        sizes = node.args[1:] if node.op == "call_method" else node.args[1:2]
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        shape, old = tuple(meta.shape), source.shape
        if len(sizes) != len(shape) or len(shape) <= source.dim:
            return False
        if len(shape) == source.dim + 1:  # everything from the channel dim on merged
            if not (sizes[source.dim] == -1 or isinstance(sizes[source.dim], torch.fx.Node)):
                return False
            return self._merge_trailing(node, source, meta, source.dim)
        if shape[: source.dim + 1] != old[: source.dim + 1]:
            return False
        if not (sizes[source.dim] == -1 or isinstance(sizes[source.dim], torch.fx.Node)):
            return False
        self.values[node] = _Channels(source.ids, source.dim, shape)
        return True

    def _pad(self, node, source: _Channels, meta) -> bool:
        pad = node.kwargs.get("pad", node.args[1] if len(node.args) > 1 else None)
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        if not isinstance(pad, (tuple, list)) or not all(isinstance(p, int) for p in pad):
            return False
        ndim = len(source.shape)
        k = ndim - 1 - source.dim  # pads are listed from the last dim backwards
        before, after = (pad[2 * k], pad[2 * k + 1]) if 2 * k + 1 < len(pad) else (0, 0)
        if (before or after) and mode != "constant":
            return False
        if before < 0 or after < 0:
            return False
        shape = tuple(meta.shape)
        if shape[source.dim] != len(source.ids) + before + after:
            return False
        op = _describe(node, self.modules)
        head, tail = self.uf.new(before), self.uf.new(after)
        reason = "constant channels added by padding (their count is fixed in the code)"
        self.fix(head + tail, op, reason, False)
        self.values[node] = _Channels(head + source.ids + tail, source.dim, shape)
        return True

    def _cat(self, node, meta) -> bool:
        tensors = node.kwargs.get("tensors", node.args[0] if node.args else None)
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if not isinstance(tensors, (tuple, list)) or not isinstance(dim, int) or not isinstance(meta, TensorMetadata):
            return False
        parameters = [t for t in tensors if isinstance(t, torch.fx.Node) and t in self.param_origin]
        parts = [self.values.get(t) if isinstance(t, torch.fx.Node) else None for t in tensors if t not in parameters]
        if not parts or not all(isinstance(p, _Channels) and not p.multi for p in parts):
            return False
        cdim = parts[0].dim
        ndim = len(parts[0].shape)
        if any(p.dim != cdim or len(p.shape) != ndim for p in parts):
            return False
        shape = tuple(meta.shape)
        if parameters:  # a class token concatenated to the tokens: its channels go with theirs
            if dim % ndim == cdim or len(shape) != ndim:
                return False
            for parameter in parameters:
                if self.attach_parameter(parameter, parts[0], ndim, cdim) is False:
                    return False
        if dim % ndim == cdim:
            ids = [i for p in parts for i in p.ids]
        else:
            for p in parts[1:]:
                if len(p.ids) != len(parts[0].ids):
                    return False
                for a, b in zip(parts[0].ids, p.ids):
                    self.uf.union(a, b)
            ids = parts[0].ids
        if shape[cdim] != len(ids):
            return False
        self.values[node] = _Channels(ids, cdim, shape)
        return True

    def _chunk(self, node, source: _Channels, meta) -> bool:
        chunks = node.kwargs.get("chunks", node.args[1] if len(node.args) > 1 else None)
        dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
        if not isinstance(chunks, int) or not isinstance(dim, int) or not isinstance(meta, (tuple, list)):
            return False
        ndim = len(source.shape)
        if dim % ndim != source.dim:
            self.values[node] = [_Channels(source.ids, source.dim, tuple(m.shape)) for m in meta]
            return True
        n = len(source.ids)
        if n % chunks or len(meta) != chunks:
            return False
        size = n // chunks
        for p in range(size):
            for c in range(1, chunks):
                self.uf.union(source.ids[p], source.ids[c * size + p])
        self.values[node] = [
            _Channels(source.ids[c * size : (c + 1) * size], source.dim, tuple(m.shape)) for c, m in enumerate(meta)
        ]
        return True


def infer_example_input(model: nn.Module) -> torch.Tensor:
    """A zero input batch of 2 for ``model`` when none is given: channels from the first
    Conv/Linear in registration order, 32 pixels per spatial dim (8 for 3-D convs)."""
    for module in model.modules():
        param = next(module.parameters(recurse=False), None)
        if isinstance(module, CONVS):
            spatial = (8,) * 3 if module.weight.dim() == 5 else (32,) * (module.weight.dim() - 2)
            return torch.zeros(2, module.in_channels, *spatial, dtype=param.dtype, device=param.device)
        if isinstance(module, nn.Linear):
            return torch.zeros(2, module.in_features, dtype=param.dtype, device=param.device)
    raise PruningError(
        f"cannot infer an input for {type(model).__name__}: it has no Conv or Linear layer; pass example_input"
    )


def propagate_shapes(model: nn.Module, example_input, needed_by: str) -> torch.fx.GraphModule:
    """Trace ``model`` and record every node's output shape, running it once in eval mode.

    The model's train/eval flags are restored afterwards and no gradient or BatchNorm statistic
    changes (the run is in eval mode under no_grad).
    """
    traced = trace(model, needed_by=needed_by, advice="use coupling=layer")
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        traced.eval()
        with torch.no_grad():
            ShapeProp(traced).propagate(*inputs)
    except PruningError:
        raise
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        reason = (lines[0] if lines else type(exc).__name__)[:160]
        shapes = [tuple(t.shape) for t in inputs if isinstance(t, torch.Tensor)]
        raise PruningError(
            f"{needed_by} runs {type(model).__name__} once on an example input of shape {shapes} and it failed "
            f"({reason}); pass example_input or input_shape that the model accepts"
        ) from exc
    finally:
        for module, mode in modes.items():
            module.training = mode
    return traced


def build_dependency_graph(model: nn.Module, example_input=None, warn: bool = True) -> DependencyGraph:
    """Trace ``model``, propagate shapes from ``example_input`` (inferred when None, see
    :func:`infer_example_input`) and return its dependency groups.

    Warns once per unknown op (naming the op and the layers it keeps whole) when ``warn``.
    """
    inner, prefix = unwrap(model)
    if example_input is None:
        example_input = infer_example_input(inner)
    traced = propagate_shapes(inner, example_input, needed_by="coupled structured pruning")
    modules = dict(inner.named_modules())
    builder = _Builder(traced.graph, modules)
    builder.run()
    return _assemble(builder, modules, prefix, model, warn)


def _assemble(builder: _Builder, modules, prefix: str, model: nn.Module, warn: bool) -> DependencyGraph:
    uf = builder.uf
    by_root: dict[int, dict[tuple[str, str], list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, module, role, index in builder.members:
        by_root[uf.find(i)][(module, role)].append(index)
    fixed_roots: dict[int, tuple[str, str, bool]] = {}
    structural = {uf.find(i): why for i, why in builder.fixed.items() if why[1] in STRUCTURAL_REASONS}
    for i, why in builder.fixed.items():
        root = uf.find(i)
        # a warning reason wins over a silent one, so the user hears about unknown ops; but where
        # the channels could never go anyway (a LayerNorm over them), that reason is the one given
        if root in structural:
            fixed_roots[root] = structural[root]
        elif root not in fixed_roots or (why[2] and not fixed_roots[root][2]):
            fixed_roots[root] = why

    # group channels that share a (module, role)
    group_of_key: dict[tuple[str, str], int] = {}
    group_uf = _UnionFind()
    roots = sorted(by_root)
    root_group = dict(zip(roots, group_uf.new(len(roots))))
    for root in roots:
        for key in by_root[root]:
            if key in group_of_key:
                group_uf.union(group_of_key[key], root_group[root])
            else:
                group_of_key[key] = root_group[root]
    head_roots = {uf.find(i) for i in builder.head_ids}
    grouped: dict[int, list[CoupledChannel]] = defaultdict(list)
    exclusions: dict[tuple[str, str], set[str]] = defaultdict(set)
    warn_flags: dict[tuple[str, str], bool] = {}
    for root in roots:
        members = tuple(
            Member(prefix + module, role, tuple(indices))  # attach() recorded them in increasing order
            for (module, role), indices in sorted(by_root[root].items())
        )
        fixed = root in fixed_roots
        if fixed:
            op, reason, loud = fixed_roots[root]
            exclusions[(op, reason)].update(m.module for m in members if m.role != NORM)
            warn_flags[(op, reason)] = loud
        grouped[group_uf.find(root_group[root])].append(CoupledChannel(members, fixed, root in head_roots))

    groups = []
    for channels in grouped.values():
        producers = [m.module for c in channels for m in c.members if m.role == OUT]
        layers = [m.module for m in channels[0].members if m.role != PARAM]
        name = producers[0] if producers else layers[0] if layers else channels[0].members[0].module
        groups.append(DependencyGroup(name, channels))
    widths = {(prefix + module, role): len(ids) for (module, role), ids in builder.module_ids.items()}
    result = [
        Exclusion(op, reason, tuple(sorted(layers)), warn_flags[(op, reason)], tuple(builder.sites.get(op, ())))
        for (op, reason), layers in exclusions.items()
    ]
    if warn:
        for exclusion in result:
            if exclusion.warned:
                shown = ", ".join(exclusion.layers[:8]) + (" ..." if len(exclusion.layers) > 8 else "")
                sites = exclusion.sites
                where = f" (at {', '.join(sites[:3])}{' ...' if len(sites) > 3 else ''})" if len(sites) > 1 else ""
                warnings.warn(
                    f"{exclusion.op}{where}: {exclusion.reason}; the channels into and out of it are not pruned "
                    f"(layers that keep those channels: {shown or 'none'})",
                    stacklevel=3,
                )
    param_dims = {prefix + name: dim for name, dim in builder.param_dims.items()}
    parameters = {name: p for name, p in model.named_parameters() if name in param_dims}
    return DependencyGraph(groups, result, widths, dict(model.named_modules()), param_dims, parameters)
