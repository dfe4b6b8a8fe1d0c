"""The state of one walk over a traced graph, and the few operations every op handler shares.

The walk (:func:`.ops.walk`) hands one :class:`BuilderState` to the handler of each node; a
handler reads the channels of the node's inputs from :attr:`BuilderState.values`, unites ids that
must go together, records which layer roles hold which ids (:meth:`BuilderState.attach`) and which
ids can never go (:meth:`BuilderState.fix`), and stores the channels of the node's output.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from framework.pruning.graph.channels import Channels, UnionFind

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


class BuilderState:
    """Everything the walk has learnt so far (see the module docstring)."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.modules = modules
        self.uf = UnionFind()
        self.values: dict[torch.fx.Node, Value | None] = {}
        self.members: list[tuple[int, str, str, int]] = []  # (id, module, role, channel index)
        self.module_ids: dict[tuple[str, str], list[int]] = {}
        self.fixed: dict[int, FixReason] = {}
        self.sites: dict[str, list[str]] = defaultdict(list)  # unknown op -> graph nodes where it occurs
        self.head_ids: list[int] = []  # one id of every attention head unit
        self.param_dims: dict[str, int] = {}  # parameter read in forward -> its channel dim
        self.param_origin: dict[torch.fx.Node, ParameterOrigin] = {}

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
