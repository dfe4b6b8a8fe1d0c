"""The state of one walk over a traced graph, and the few operations every op handler shares.

The walk (:func:`.ops.walk`) hands one :class:`BuilderState` to the handler of each node; a
handler reads the channels of the node's inputs from :attr:`BuilderState.values`, unites ids that
must go together, records which layer roles hold which ids (:meth:`BuilderState.attach`) and which
ids can never go (:meth:`BuilderState.fix`), and stores the channels of the node's output.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from framework.pruning.graph.channels import Channels, UnionFind
from framework.pruning.graph.constants import AttributeInt, Origin, Site
from framework.pruning.graph.groups import PARAM, SIZE_READ_REASON

# What a node's value is to the walk: one tensor's channels, the channels of each tensor of a tuple
# (None where an element carries none), or absent (no channels).
Value = Channels | list[Channels | None]
# A parameter read in forward (get_attr, and its expand()s): (name, shape, leading dims added or None)
ParameterOrigin = tuple[str, tuple[int, ...], int | None]
# Why ids are fixed: (op, reason, whether the user is warned)
FixReason = tuple[str, str, bool]


def tensor_meta(value: Any) -> Any:
    """The shape record ShapeProp left on ``value`` (None for a non-node or a node without one)."""
    return value.meta.get("tensor_meta") if isinstance(value, torch.fx.Node) else None


def argument(node: torch.fx.Node, position: int, name: str, default: Any = None) -> Any:
    """Argument ``name`` of a call, given by keyword or at ``position``."""
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[position] if len(node.args) > position else default


def op_name(node: torch.fx.Node) -> str | None:
    """``view`` for ``x.view(...)`` and ``torch.view(...)`` alike (None for a nameless callable)."""
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", None)


def _size_read(size: Any) -> tuple[torch.fx.Node, Any] | None:
    """(tensor, dim) when ``size`` is ``tensor.shape[dim]``, ``tensor.size()[dim]`` or ``tensor.size(dim)``."""
    if not isinstance(size, torch.fx.Node):
        return None
    if size.op == "call_method" and size.target == "size" and len(size.args) == 2:
        source = size.args[0]
        return (source, size.args[1]) if isinstance(source, torch.fx.Node) else None
    if size.op != "call_function" or size.target is not operator.getitem:
        return None
    shape, dim = size.args[0], size.args[1]
    if not isinstance(shape, torch.fx.Node) or not shape.args or not isinstance(shape.args[0], torch.fx.Node):
        return None
    whole_size = shape.op == "call_method" and shape.target == "size" and len(shape.args) == 1
    shape_attribute = shape.op == "call_function" and shape.target is getattr and shape.args[1:] == ("shape",)
    return (shape.args[0], dim) if whole_size or shape_attribute else None


_RESHAPES = ("view", "reshape")


class BuilderState:
    """Everything the walk has learnt so far (see the module docstring)."""

    def __init__(self, modules: dict[str, nn.Module], consumed: Iterable[Origin] = ()):
        self.modules = modules
        self.uf = UnionFind()
        self.values: dict[torch.fx.Node, Value | None] = {}
        self.module_ids: dict[tuple[str, str], list[int]] = {}
        self.fixed: dict[int, FixReason] = {}
        self.sites: dict[str, list[str]] = defaultdict(list)  # unknown op -> graph nodes where it occurs
        # run-time size reads (``x.shape[1]``) a reshape used as the size of these very channels
        self.followed_sizes: set[torch.fx.Node] = set()
        self.head_ids: list[int] = []  # one id of every attention head unit
        self.param_dims: dict[str, int] = {}  # parameter read in forward -> its channel dim
        self.param_origin: dict[torch.fx.Node, ParameterOrigin] = {}
        # sizes written as module attributes (.constants): the ones Python consumed while tracing,
        # and the uses handlers understood (sites)
        self.consumed: set[Origin] = set(consumed)
        self.size_sites: dict[Origin, list[Site]] = defaultdict(list)
        # parameters read in forward (get_attr): (name, dim, the ids of their slices along dim)
        self.parameter_reads: list[tuple[str, int, list[int]]] = []

    # ----------------------------------------------------------------------------- ids
    def fresh(self, meta: TensorMetadata, dim: int) -> Channels:
        shape = tuple(meta.shape)
        return Channels(self.uf.new(shape[dim] if shape else 0), dim, shape)

    def fresh_outputs(self, meta: Any, dim: int | None = None) -> Value | None:
        """New ids for a node's output(s), along ``dim`` or the conventional channel dim."""
        if isinstance(meta, TensorMetadata):
            if dim is not None:
                return self.fresh(meta, dim)
            return self.fresh(meta, 1 if len(meta.shape) >= 2 else 0) if len(meta.shape) >= 1 else None
        if isinstance(meta, (tuple, list)) and meta and all(isinstance(m, TensorMetadata) for m in meta):
            return [self.fresh(m, 1 if len(m.shape) >= 2 else 0) for m in meta if len(m.shape) >= 1]
        return None

    def fix(self, ids: Iterable[int], op: str, reason: str, warn: bool) -> None:
        for i in ids:
            self.fixed.setdefault(i, (op, reason, warn))

    def keep(self, node: torch.fx.Node, ids: Iterable[int], reason: str, warn: bool = True) -> None:
        """Fix ``ids`` because of ``node`` (its op named in the warning, the node among its sites)."""
        op = self.describe(node)
        self.sites[op].append(node.name)
        self.fix(ids, op, reason, warn)

    def attach(self, ids: list[int], module: str, role: str) -> None:
        """Record ``ids`` as the channels of (module, role); a second call couples them."""
        key = (module, role)
        known = self.module_ids.get(key)
        if known is None:
            self.module_ids[key] = list(ids)
        else:
            for a, b in zip(known, ids):
                self.uf.union(a, b)

    def span(self, grid: torch.Tensor, dim: int) -> None:
        """Union the ids along ``dim`` of ``grid`` (every unit then spans that dim)."""
        first = grid.select(dim, 0).flatten().tolist()
        for i in range(1, grid.shape[dim]):
            for a, b in zip(first, grid.select(dim, i).flatten().tolist()):
                self.uf.union(a, b)

    def spans(self, grid: torch.Tensor, dim: int) -> bool:
        """Whether every unit already spans ``dim`` of ``grid``."""
        find = self.uf.find
        first = [find(i) for i in grid.select(dim, 0).flatten().tolist()]
        return all(
            [find(i) for i in grid.select(dim, p).flatten().tolist()] == first for p in range(1, grid.shape[dim])
        )

    # ----------------------------------------------------------------------------- sizes in the code
    def rewritable(self, size: Any) -> bool:
        """Whether ``size`` is a module attribute thinning may rewrite (so far: the walk's end decides)."""
        return isinstance(size, AttributeInt) and size.origin not in self.consumed

    def claim(self, node: torch.fx.Node, size: Any, positions: list[int] | None) -> None:
        """Record a use of ``size`` at ``node`` the handler understood: one channel id per position
        along the dim it sizes (each position a whole unit), or None where its value must stay. A
        plain int: nothing to record."""
        if isinstance(size, AttributeInt):
            self.size_sites[size.origin].append(Site(size, positions, node.name))

    def reads_channels(self, size: Any, ids: list[int]) -> bool:
        """Whether ``size`` is computed at run time as the size of a dim that carries exactly the
        channels ``ids`` (``x.shape[1]``, ``x.size(1)``): it then follows them through thinning."""
        read = _size_read(size)
        if read is None:
            return False
        source, dim = read
        channels = self.values.get(source)
        if not isinstance(channels, Channels) or channels.multi or not isinstance(dim, int):
            return False
        if dim % len(channels.shape) != channels.dim or len(channels.ids) != len(ids):
            return False
        find = self.uf.find
        same = all(find(a) == find(b) for a, b in zip(channels.ids, ids))
        if same:
            self.followed_sizes.add(size)
        return same

    def fix_sizes_read_as_numbers(self, graph: torch.fx.Graph) -> None:
        """A channel count read at run time (``B, T, C = x.size()``) and used as anything but the
        size of a reshape of these very channels (``C // n_head``, the size of another tensor's
        reshape) would change its value after thinning: the channels it counts stay."""
        for node in graph.nodes:
            read = _size_read(node)
            if read is None or not isinstance(read[1], int):
                continue
            channels = self.values.get(read[0])
            if not isinstance(channels, Channels) or read[1] % len(channels.shape) not in channels.axes:
                continue
            users = node.users
            if not users or (node in self.followed_sizes and all(op_name(user) in _RESHAPES for user in users)):
                continue
            op = "channel count (.size() / .shape)"
            self.sites[op].append(node.name)
            self.fix(channels.ids, op, SIZE_READ_REASON, True)

    def settle_parameter_reads(self) -> None:
        """A parameter read in forward is a constant, except where every one of its slices went into
        an attention head (a per-head relative-position bias table): the head then owns its slice."""
        find = self.uf.find
        heads = {find(h) for h in self.head_ids}
        for name, dim, ids in self.parameter_reads:
            roots = [find(i) for i in ids]
            owned = bool(ids) and all(r in heads for r in roots) and len(set(roots)) == len(roots)
            if owned and self.param_dims.setdefault(name, dim) == dim:
                self.attach(ids, name, PARAM)
            else:
                self.fix(ids, f"tensor attribute '{name}'", "a constant read in forward", False)

    # ----------------------------------------------------------------------------- reading nodes
    def tensors_in(self, value: Any) -> list[Channels]:
        """Every channel-carrying value inside args (nested tuples/lists/dicts)."""
        found: list[Channels] = []
        if isinstance(value, torch.fx.Node):
            v = self.values.get(value)
            if isinstance(v, Channels):
                found.append(v)
            elif isinstance(v, list):
                found.extend(c for c in v if c is not None)
        elif isinstance(value, (tuple, list)):
            for item in value:
                found.extend(self.tensors_in(item))
        elif isinstance(value, dict):
            for item in value.values():
                found.extend(self.tensors_in(item))
        return found

    def only_first_is_tensor(self, node: torch.fx.Node) -> bool:
        return not self.tensors_in(list(node.args[1:]) + list(node.kwargs.values()))

    def describe(self, node: torch.fx.Node) -> str:
        """The op of ``node`` as a warning names it: one name for all ``view()`` calls, say (the graph
        nodes where it occurs are listed in ``Exclusion.sites``)."""
        if node.op == "call_module":
            return f"{type(self.modules[str(node.target)]).__name__} '{node.target}'"
        if node.op == "call_method":
            return f"method .{node.target}()"
        return f"{getattr(node.target, '__name__', str(node.target))}()"

    # ----------------------------------------------------------------------------- giving up
    def unknown(self, node: torch.fx.Node, reason: str, warn: bool = True) -> None:
        """Fix every channel flowing into and out of ``node``."""
        op = self.describe(node)
        self.sites[op].append(node.name)
        inputs = self.tensors_in(list(node.args) + list(node.kwargs.values()))
        for channels in inputs:
            self.fix(channels.ids, op, reason, warn)
        meta = node.meta.get("tensor_meta")
        # an output shaped like an input (a fused attention call on [B, H, W, C]) keeps its channel dim
        like = next(
            (
                c.dim
                for c in inputs
                if not c.multi and isinstance(meta, TensorMetadata) and len(c.shape) == len(meta.shape) and c.dim != 1
            ),
            None,
        )
        outputs = self.fresh_outputs(meta, like)
        if outputs is not None:
            for channel_set in outputs if isinstance(outputs, list) else [outputs]:
                if channel_set is not None:
                    self.fix(channel_set.ids, op, reason, warn)
            self.values[node] = outputs
