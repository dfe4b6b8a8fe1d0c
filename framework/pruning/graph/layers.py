"""Handlers of the modules whose weights hold channels, and of modules that pass channels through.

Conv/ConvTranspose/Linear produce fresh channels (their ``out`` members) and consume their
input's (``in`` members); a module called twice couples the channels of both calls. Grouped convs
couple position ``p`` of every group on both sides; depthwise convs pass each channel through to
the filters of its group. BatchNorm/InstanceNorm channels are ``norm`` members of the channel they
normalise. Each handler takes the walk's state, the node, the module, the channels of its input
and its shape record, and returns True when it handled the node (see :mod:`.ops`).
"""

from __future__ import annotations

from typing import Any

import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from framework.pruning.graph.channels import Channels
from framework.pruning.graph.elementwise import pass_channels, same_layout
from framework.pruning.graph.fx import CONV_LINEAR, CONVS
from framework.pruning.graph.groups import IN, NORM, OUT
from framework.pruning.graph.state import BuilderState, argument

# modules that act on every element alone: they keep any layout of channels (heads included)
ELEMENTWISE_MODULES = (
    *(nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh),
    *(nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid),
    *(nn.Identity, nn.Dropout, nn.AlphaDropout),
)


def layer(state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any) -> bool:
    """A Conv/ConvTranspose/Linear called on one tensor."""
    if len(inputs) != 1 or not isinstance(meta, TensorMetadata) or node.kwargs or len(node.args) != 1:
        return False
    return _layer(state, node, str(node.target), module, inputs[0], meta)


def functional_layer(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``F.linear`` / ``F.conv*d`` on the weight (and bias) of a Linear/Conv module, as a subclass
    that calls the function in its forward does (timm's ``Linear``): the same as calling the
    module. A weight computed in forward (standardised, scaled) is not followed."""
    if not isinstance(first, Channels) or not isinstance(meta, TensorMetadata) or not node.args:
        return False
    weight, bias = argument(node, 1, "weight"), argument(node, 2, "bias")
    if not (isinstance(weight, torch.fx.Node) and weight.op == "get_attr"):
        return False
    owner, _, attribute = str(weight.target).rpartition(".")
    module = state.modules.get(owner)
    if attribute != "weight" or not isinstance(module, CONV_LINEAR):
        return False
    if bias is not None and not (isinstance(bias, torch.fx.Node) and str(bias.target) == f"{owner}.bias"):
        return False
    if isinstance(module, CONVS) and argument(node, 6, "groups", 1) != module.groups:
        return False
    return _layer(state, node, owner, module, first, meta)


def _layer(state: BuilderState, node: torch.fx.Node, name: str, module: nn.Module, source: Channels, meta: Any) -> bool:
    wanted = len(source.shape) - 1 if isinstance(module, nn.Linear) else 1
    if source.dim != wanted and len(source.shape) > wanted:
        source = refit(state, source, wanted) or source
    if isinstance(module, nn.Linear):
        if source.dim != len(source.shape) - 1:
            return False
        out_dim = len(meta.shape) - 1
    else:
        if source.dim != 1 or len(meta.shape) < 2:
            return False
        out_dim = 1
    groups = module.groups if isinstance(module, CONVS) else 1
    if isinstance(module, CONVS) and module.transposed and groups != 1:
        return False
    out = state.fresh(meta, out_dim)
    if groups > 1:
        _couple_conv_groups(state, source.ids, out.ids, groups)
    state.attach(source.ids, name, IN)
    state.attach(out.ids, name, OUT)  # a shared layer's second call is coupled to its first
    state.values[node] = out
    return True


def _couple_conv_groups(state: BuilderState, in_ids: list[int], out_ids: list[int], groups: int) -> None:
    per_in, per_out = len(in_ids) // groups, len(out_ids) // groups
    if per_in == 1:  # depthwise: input channel c flows into the filters of group c
        state.uf.unite((in_ids[c] for c in range(groups) for _ in range(per_out)), out_ids[: groups * per_out])
        return
    # each group must lose the same positions for `groups` to stay valid
    state.uf.unite(
        (in_ids[p] for p in range(per_in) for _ in range(1, groups)),
        (in_ids[g * per_in + p] for p in range(per_in) for g in range(1, groups)),
    )
    state.uf.unite(
        (out_ids[q] for q in range(per_out) for _ in range(1, groups)),
        (out_ids[g * per_out + q] for q in range(per_out) for g in range(1, groups)),
    )


def refit(state: BuilderState, source: Channels, dim: int) -> Channels | None:
    """Channels kept whole by an unknown op carry no information about which dim holds them:
    a layer that reads them along ``dim`` gets fresh kept ids there (None if some are removable)."""
    reasons = [state.fixed.get(i) for i in source.ids]
    first = reasons[0] if reasons else None
    if first is None or any(r is None for r in reasons):
        return None
    channels = Channels(state.uf.new(source.shape[dim]), dim, source.shape)
    state.fix(channels.ids, *first)
    return channels


def batch_norm(state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any) -> bool:
    """BatchNorm/InstanceNorm over dim 1: its features are ``norm`` members of the channels."""
    if len(inputs) != 1 or len(node.args) != 1 or inputs[0].dim != 1:
        return False
    state.attach(inputs[0].ids, str(node.target), NORM)
    state.values[node] = inputs[0]
    return True


def single_prelu(
    state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any
) -> bool:
    """A PReLU with one slope for every channel acts on each channel alike."""
    if not (isinstance(module, nn.PReLU) and module.num_parameters == 1 and len(inputs) == 1):
        return False
    state.values[node] = inputs[0]
    return True


def pass_module(state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any) -> bool:
    """An activation, dropout, pooling, padding or upsampling module: channels pass through."""
    if len(inputs) != 1 or not isinstance(meta, TensorMetadata):
        return False
    return pass_channels(state, node, inputs[0], meta)


def pass_module_spread(
    state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any
) -> bool:
    """An element-wise module (activation, dropout, identity) on channels spread over several dims
    (heads): every dim keeps its size, so the layout passes through."""
    if len(inputs) != 1 or not isinstance(meta, TensorMetadata) or not isinstance(module, ELEMENTWISE_MODULES):
        return False
    return same_layout(state, node, inputs[0], meta)
