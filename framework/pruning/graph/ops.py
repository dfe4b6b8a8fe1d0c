"""The op tables: how each node kind, module type, function and method moves channels.

:func:`walk` visits the traced graph once. A call is looked up in a table (:data:`MODULES` by
type, :data:`FUNCTIONS` by the function, :data:`FOREIGN_FUNCTIONS` by the module and name of a
function of another library, :data:`METHODS` by name) and the handlers of its entry are tried in
order until one handles the node. A node that no handler takes is *unknown*: the channels flowing
into and out of it are fixed, and the user is warned once per op. Unknown ops are never assumed
element-wise.

Each entry has two handler lists: ``handlers`` for channels on one dim (the usual case) and
``spread`` for channels spread over several dims (after an embedding was split into heads), where
only layout-aware handlers may look. Teaching the graph a new op is one entry here and, when no
handler fits, one handler function in the room that matches it (:mod:`.layers`, :mod:`.elementwise`,
:mod:`.reshapes`, :mod:`.layouts`, :mod:`.heads`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from framework.pruning.graph import elementwise, heads, layers, layouts, norms, reshapes
from framework.pruning.graph.channels import Channels
from framework.pruning.graph.fx import CONV_LINEAR, NORMS, POOLS
from framework.pruning.graph.groups import CONSTANT_INDEX_REASON, SPLIT_REASON, UNKNOWN_REASON
from framework.pruning.graph.state import BuilderState

# handler(state, node, channels of the first argument, shape record) -> handled?
CallHandler = Callable[[BuilderState, torch.fx.Node, Any, Any], bool]
# handler(state, node, module, channels of its input, shape record) -> handled?
ModuleHandler = Callable[[BuilderState, torch.fx.Node, nn.Module, list[Channels], Any], bool]


@dataclass(frozen=True)
class CallOp:
    """A function or method: its handlers, and the reason given when none takes a node."""

    handlers: tuple[CallHandler, ...] = ()
    spread: tuple[CallHandler, ...] = ()
    reason: str = UNKNOWN_REASON  # channels on one dim; spread channels always get UNKNOWN_REASON


@dataclass(frozen=True)
class ModuleOp:
    """A module type: its handlers (unknown reason: :data:`.groups.UNKNOWN_REASON`)."""

    handlers: tuple[ModuleHandler, ...] = ()
    spread: tuple[ModuleHandler, ...] = ()


def ignore(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """Calls that only read metadata (sizes): their results are not tensors with channels."""
    return True


def ignore_non_tensor(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """``getattr(x, "shape")`` and the like: nothing to follow unless a tensor comes out."""
    return meta is None


def _entries(keys: Iterable[Any], op: Any) -> dict[Any, Any]:
    return dict.fromkeys(keys, op)


# ----------------------------------------------------------------------------- the entries
PASS = CallOp((elementwise.pass_through,), (elementwise.pass_through,))
BINARY = CallOp((elementwise.binary,), (elementwise.binary,))
REDUCE = CallOp((elementwise.reduce,))
FLATTEN = CallOp((reshapes.flatten, layouts.reshape_call), (layouts.reshape_call,))
RESHAPE = CallOp((reshapes.reshape, layouts.reshape_call), (layouts.reshape_call,))
UNFLATTEN = CallOp((layouts.reshape_call,), (layouts.reshape_call,))
PERMUTE = CallOp((layouts.permute,), (layouts.permute,))
UNSQUEEZE = CallOp((layouts.unsqueeze,), (layouts.unsqueeze,))
INDEX = CallOp(
    (reshapes.item_of_tuple, reshapes.item, reshapes.channel_slice, reshapes.item_of_untracked, layouts.index),
    (layouts.index,),
    CONSTANT_INDEX_REASON,
)
UNBIND = CallOp((layouts.unbind,), (layouts.unbind,))
SOFTMAX = CallOp((layouts.softmax_call,), (layouts.softmax_call,))
LAYER_NORM = CallOp((layouts.layer_norm_call,), (layouts.layer_norm_call,))
MATMUL = CallOp((heads.matmul,), (heads.matmul,))
METADATA = CallOp((ignore,), (ignore,))
SPLIT = CallOp((reshapes.split,), reason=SPLIT_REASON)

# Modules that act on each channel independently (or only on other dims).
PASS_MODULES = (
    *layers.ELEMENTWISE_MODULES,
    *(nn.Dropout1d, nn.Dropout2d, nn.Dropout3d),
    *POOLS,
    *(nn.LPPool1d, nn.LPPool2d, nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d),
    *(nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d),
    *(nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d),
)
MODULES: dict[type, ModuleOp] = {
    **_entries(CONV_LINEAR, ModuleOp((layers.layer,))),
    **_entries(NORMS, ModuleOp((layers.batch_norm,))),
    nn.PReLU: ModuleOp((layers.single_prelu,)),
    **_entries(PASS_MODULES, ModuleOp((layers.pass_module,), (layers.pass_module_spread,))),
    nn.Flatten: ModuleOp((reshapes.flatten_module, layouts.reshape_module), (layouts.reshape_module,)),
    nn.Unflatten: ModuleOp((layouts.reshape_module,), (layouts.reshape_module,)),
    **_entries((nn.LayerNorm, nn.RMSNorm), ModuleOp((layouts.layer_norm_module,), (layouts.layer_norm_module,))),
    nn.Softmax: ModuleOp((layouts.softmax_module,), (layouts.softmax_module,)),
    nn.MultiheadAttention: ModuleOp((heads.multihead,), (heads.multihead,)),
    nn.GroupNorm: ModuleOp((norms.group_norm_module,)),
}

PASS_FUNCTIONS = (
    *(F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu),
    *(F.mish, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus),
    *(F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout),
    *(F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d),
    *(F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d),
    *(F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.interpolate),
    *(torch.abs, torch.exp, torch.neg, torch.square, torch.sqrt, torch.clamp, torch.clip),
)
BINARY_FUNCTIONS = (
    *(operator.add, operator.sub, operator.mul, operator.truediv),
    *(operator.iadd, operator.isub, operator.imul, operator.itruediv),
    *(torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum),
)
FUNCTIONS: dict[Any, CallOp] = {
    **_entries(PASS_FUNCTIONS, PASS),
    **_entries(BINARY_FUNCTIONS, BINARY),
    **_entries((torch.mean, torch.sum, torch.amax, torch.amin), REDUCE),
    torch.flatten: FLATTEN,
    torch.reshape: RESHAPE,
    torch.unflatten: UNFLATTEN,
    **_entries((torch.permute, torch.transpose, torch.swapaxes, torch.swapdims, torch.movedim), PERMUTE),
    torch.moveaxis: PERMUTE,
    torch.unsqueeze: UNSQUEEZE,
    torch.roll: CallOp((layouts.roll,)),
    F.pad: CallOp((reshapes.pad,)),
    **_entries((torch.cat, torch.concat), CallOp((reshapes.cat,))),
    torch.chunk: CallOp((reshapes.chunk,)),
    torch.split: SPLIT,
    operator.getitem: INDEX,
    torch.unbind: UNBIND,
    **_entries((F.softmax, F.log_softmax, torch.softmax, torch.log_softmax), SOFTMAX),
    **_entries((F.layer_norm, F.rms_norm), LAYER_NORM),
    **_entries((F.batch_norm, F.instance_norm), CallOp((norms.batch_norm_call,))),
    F.group_norm: CallOp((norms.group_norm_call,)),
    **_entries((F.linear, F.conv1d, F.conv2d, F.conv3d), CallOp((layers.functional_layer,))),
    F.scaled_dot_product_attention: CallOp((heads.scaled_dot_product,), (heads.scaled_dot_product,)),
    **_entries((torch.matmul, operator.matmul), MATMUL),
    getattr: CallOp((ignore_non_tensor,), (ignore_non_tensor,)),
}
# Functions of other libraries, by (module, name): importing them here would make torch-only
# pruning depend on those libraries.
FOREIGN_FUNCTIONS: dict[tuple[Any, Any], CallOp] = {
    # scales whole samples (or is identity)
    ("torchvision.ops.stochastic_depth", "stochastic_depth"): CallOp((elementwise.pass_through,)),
    ("torchvision.models.swin_transformer", "shifted_window_attention"): CallOp(
        (heads.window_attention,), (heads.window_attention,)
    ),
    # pads H and W to even sizes and concatenates the four 2x2 phases along the channels
    ("torchvision.models.swin_transformer", "_patch_merging_pad"): CallOp(
        (heads.patch_merging,), (heads.patch_merging,)
    ),
}
PASS_METHODS = (
    *("relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip"),
    *("abs", "neg", "exp", "square", "sqrt", "contiguous", "clone", "detach"),
    *("float", "double", "half", "to", "type_as"),
)
METHODS: dict[str, CallOp] = {
    **_entries(PASS_METHODS, PASS),
    **_entries(("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"), BINARY),
    **_entries(("mean", "sum", "amax", "amin"), REDUCE),
    "flatten": FLATTEN,
    **_entries(("view", "reshape"), RESHAPE),
    "unflatten": UNFLATTEN,
    **_entries(("permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis"), PERMUTE),
    "unsqueeze": UNSQUEEZE,
    "roll": CallOp((layouts.roll,)),
    "chunk": CallOp((reshapes.chunk,)),
    "split": SPLIT,
    "unbind": UNBIND,
    **_entries(("softmax", "log_softmax"), SOFTMAX),
    "matmul": MATMUL,
    **_entries(("size", "dim", "numel"), METADATA),
    "expand": CallOp((elementwise.read_parameter,), (elementwise.read_parameter,)),
}


# ----------------------------------------------------------------------------- lookups
_MODULE_OPS: dict[type, ModuleOp | None] = {}  # a module type -> the entry of its nearest registered base


def module_op(kind: type) -> ModuleOp | None:
    if kind not in _MODULE_OPS:
        _MODULE_OPS[kind] = next((MODULES[base] for base in kind.__mro__ if base in MODULES), None)
    return _MODULE_OPS[kind]


def function_op(function: Any) -> CallOp | None:
    op = FUNCTIONS.get(function)
    if op is None:
        op = FOREIGN_FUNCTIONS.get((getattr(function, "__module__", None), getattr(function, "__name__", None)))
    return op


# ----------------------------------------------------------------------------- node kinds
def placeholder(state: BuilderState, node: torch.fx.Node) -> None:
    outputs = state.fresh_outputs(node.meta.get("tensor_meta"))
    if outputs is not None:
        for channels in outputs if isinstance(outputs, list) else [outputs]:
            if channels is not None:
                state.fix(channels.ids, "the network input", "its channels are the input planes", False)
        state.values[node] = outputs


def get_attr(state: BuilderState, node: torch.fx.Node) -> None:
    meta = node.meta.get("tensor_meta")
    if isinstance(meta, TensorMetadata):
        target = str(node.target)
        dim = 1 if len(meta.shape) >= 2 else 0
        channels = state.fresh(meta, dim)
        state.values[node] = channels
        owner, _, attribute = target.rpartition(".")
        if isinstance(getattr(state.modules.get(owner), attribute, None), nn.Parameter):
            # followed where it meets channels element-wise (layer scale, position embedding); its
            # slices may become part of attention heads (a per-head bias table): decided after the walk
            state.param_origin[node] = (target, tuple(meta.shape), None)
            state.parameter_reads.append((target, dim, channels.ids))
        else:
            state.fix(channels.ids, f"tensor attribute '{target}'", "a constant read in forward", False)


def output(state: BuilderState, node: torch.fx.Node) -> None:
    for channels in state.tensors_in(node.args):
        state.fix(channels.ids, "the model output", "its channels are what the model returns", False)


def call_module(state: BuilderState, node: torch.fx.Node) -> None:
    module = state.modules[str(node.target)]
    inputs = state.tensors_in(node.args[:1])
    meta = node.meta.get("tensor_meta")
    op = module_op(type(module))
    if op is not None:
        spread = any(value.multi for value in inputs)
        for handler in op.spread if spread else op.handlers:
            if handler(state, node, module, inputs, meta):
                return
    state.unknown(node, UNKNOWN_REASON)


def call(state: BuilderState, node: torch.fx.Node, op: CallOp | None) -> None:
    """A call_function or call_method node, with the table entry of its function or method."""
    meta = node.meta.get("tensor_meta")
    args = node.args
    if meta is None and not state.tensors_in(list(args) + list(node.kwargs.values())):
        return  # no tensor with channels goes in or comes out (sizes, arithmetic on ints)
    first = state.values.get(args[0]) if args and isinstance(args[0], torch.fx.Node) else None
    spread = isinstance(first, Channels) and first.multi
    if op is not None:
        for handler in op.spread if spread else op.handlers:
            if handler(state, node, first, meta):
                return
    state.unknown(node, UNKNOWN_REASON if spread or op is None else op.reason)


NODE_KINDS: dict[str, Callable[[BuilderState, torch.fx.Node], None]] = {
    "placeholder": placeholder,
    "get_attr": get_attr,
    "output": output,
    "call_module": call_module,
    "call_function": lambda state, node: call(state, node, function_op(node.target)),
    "call_method": lambda state, node: call(state, node, METHODS.get(str(node.target))),
}


def walk(state: BuilderState, graph: torch.fx.Graph) -> None:
    """Visit every node of ``graph`` once, in order (the graph is topologically sorted)."""
    for node in graph.nodes:
        NODE_KINDS[node.op](state, node)
