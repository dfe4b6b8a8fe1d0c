"""Normalisations that act per channel or per group of channels, as modules or as function calls.

Modules of a model zoo often call the function themselves: timm's ``BatchNormAct2d`` (a
``BatchNorm2d`` with the activation inside) runs ``F.batch_norm(x, self.running_mean,
self.running_var, self.weight, self.bias, ...)`` in its forward, ``GroupNormAct`` runs
``F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)``. The trace goes through such
modules, so the graph reads the call, not the class: the tensors it receives are ``get_attr``
nodes, and their owner says what they are.

* ``F.batch_norm`` / ``F.instance_norm`` (channels on dim 1): per channel. When every tensor the
  call reads belongs to one BatchNorm/InstanceNorm module (the usual case), that module's channels
  are ``norm`` members, as for the module itself; otherwise each tensor (parameter or buffer) is a
  ``param`` member sliced along dim 0.
* ``nn.GroupNorm`` and ``F.group_norm``: statistics are taken per group of ``C / G`` consecutive
  channels, so removing one channel of a group would change what the others compute; a whole group
  can go when the group count goes down with it. The units are therefore whole groups: for the
  module thinning lowers ``num_groups``; for the call the group count must be a module attribute
  (:mod:`.constants`) that thinning rewrites, or the channels are kept. ``G = 1`` normalises over
  every channel, as LayerNorm does: they are kept (silently: nothing in the code around it could
  change that).

Each handler returns True when it handled the node (see :mod:`.ops`).
"""

from __future__ import annotations

from typing import Any

import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from framework.pruning.graph.channels import Channels
from framework.pruning.graph.fx import NORMS
from framework.pruning.graph.groups import GROUPS_REASON, NORM, NORMALISED_REASON, PARAM
from framework.pruning.graph.state import BuilderState, argument

_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var")


def batch_norm_call(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``F.batch_norm`` / ``F.instance_norm`` (input, running_mean, running_var, weight, bias, ...)."""
    if not _on_channels(first, meta):
        return False
    names = ("running_mean", "running_var", "weight", "bias")
    tensors = [argument(node, i + 1, name) for i, name in enumerate(names)]
    return _per_channel(state, node, first, meta, [t for t in tensors if t is not None], NORMS)


def group_norm_call(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``F.group_norm(input, num_groups, weight, bias, eps)``."""
    if not _on_channels(first, meta):
        return False
    groups = argument(node, 1, "num_groups")
    if not isinstance(groups, int) or groups < 1 or len(first.ids) % groups:
        return False
    tensors = [t for t in (argument(node, 2, "weight"), argument(node, 3, "bias")) if t is not None]
    if groups > 1 and not state.rewritable(groups):
        state.keep(node, first.ids, GROUPS_REASON)
    state.claim(node, groups, _group_units(state, node, first, groups))
    return _per_channel(state, node, first, meta, tensors, (nn.GroupNorm,))


def group_norm_module(
    state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any
) -> bool:
    """``nn.GroupNorm``: whole groups are the units; thinning lowers ``num_groups``."""
    if not isinstance(module, nn.GroupNorm) or len(inputs) != 1 or len(node.args) != 1:
        return False
    if not _on_channels(inputs[0], meta) or len(inputs[0].ids) != module.num_channels:
        return False
    _group_units(state, node, inputs[0], module.num_groups)
    state.attach(inputs[0].ids, str(node.target), NORM)
    state.values[node] = Channels(inputs[0].ids, 1, tuple(meta.shape))
    return True


def _on_channels(first: Any, meta: Any) -> bool:
    return (
        isinstance(first, Channels)
        and not first.multi
        and first.dim == 1
        and isinstance(meta, TensorMetadata)
        and len(meta.shape) >= 2
        and meta.shape[1] == len(first.ids)
    )


def _group_units(state: BuilderState, node: torch.fx.Node, channels: Channels, groups: int) -> list[int] | None:
    """Unite the channels of each group (one removable unit per group); the first id of each
    group, or None when one group spans every channel (they are then kept)."""
    if groups == 1:
        state.fix(channels.ids, state.describe(node), NORMALISED_REASON, False)
        return None
    size = len(channels.ids) // groups
    for g in range(groups):
        ids = channels.ids[g * size : (g + 1) * size]
        for other in ids[1:]:
            state.uf.union(ids[0], other)
    return channels.ids[::size]


def _owned_by(state: BuilderState, tensors: list[Any], kind: tuple[type, ...]) -> str | None:
    """The module of type ``kind`` that every tensor (a ``get_attr`` node) belongs to, if one does."""
    targets = [str(t.target) for t in tensors if isinstance(t, torch.fx.Node) and t.op == "get_attr"]
    if not targets or len(targets) != len(tensors):
        return None
    owners = {target.rpartition(".")[0] for target in targets}
    if len(owners) != 1 or not all(target.rpartition(".")[2] in _NORM_TENSORS for target in targets):
        return None
    owner = owners.pop()
    return owner if isinstance(state.modules.get(owner), kind) else None


def _per_channel(
    state: BuilderState,
    node: torch.fx.Node,
    channels: Channels,
    meta: Any,
    tensors: list[Any],
    kind: tuple[type, ...],
) -> bool:
    """The call's per-channel tensors go with the channels: the owner's ``norm`` members, or
    ``param`` members (dim 0) for tensors of another module."""
    owner = _owned_by(state, tensors, kind)
    if owner is not None:
        state.attach(channels.ids, owner, NORM)
    else:
        for tensor in tensors:
            target = str(tensor.target) if isinstance(tensor, torch.fx.Node) and tensor.op == "get_attr" else None
            shape = getattr(tensor.meta.get("tensor_meta"), "shape", None) if target else None
            if target is None or tuple(shape or ()) != (len(channels.ids),):
                return False
            if state.param_dims.setdefault(target, 0) != 0:
                return False
            state.attach(channels.ids, target, PARAM)
    state.values[node] = Channels(channels.ids, 1, tuple(meta.shape))
    return True
