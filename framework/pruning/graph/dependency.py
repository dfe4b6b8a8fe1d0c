"""Dependency groups: which channels across layers must be removed together.

Removing output channel ``c`` of a convolution only yields a smaller network that computes the same
function if everything else that touches channel ``c`` of that tensor goes with it. This module reads
the model's ``torch.fx`` graph (shapes from :class:`torch.fx.passes.shape_prop.ShapeProp` on an
example input), walks it once with the handlers of the op tables (:mod:`.ops`) and returns those
sets (:mod:`.groups`).

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
* Transformers (:mod:`.layouts`, :mod:`.heads`): permute/transpose, reshapes into heads and back, LayerNorm (over the
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

import warnings
from collections import defaultdict

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from framework.errors import PruningError
from framework.pruning.graph.channels import UnionFind
from framework.pruning.graph.fx import CONVS, trace, unwrap
from framework.pruning.graph.groups import (
    NORM,
    OUT,
    PARAM,
    STRUCTURAL_REASONS,
    CoupledChannel,
    DependencyGraph,
    DependencyGroup,
    Exclusion,
    Member,
)
from framework.pruning.graph.ops import walk
from framework.pruning.graph.state import BuilderState, FixReason


def infer_example_input(model: nn.Module) -> torch.Tensor:
    """A zero input batch of 2 for ``model`` when none is given: channels from the first
    Conv/Linear in registration order, 32 pixels per spatial dim (8 for 3-D convs)."""
    for module in model.modules():
        if isinstance(module, CONVS):
            weight = module.weight
            spatial = (8,) * 3 if weight.dim() == 5 else (32,) * (weight.dim() - 2)
            return torch.zeros(2, module.in_channels, *spatial, dtype=weight.dtype, device=weight.device)
        if isinstance(module, nn.Linear):
            weight = module.weight
            return torch.zeros(2, module.in_features, dtype=weight.dtype, device=weight.device)
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
    state = BuilderState(dict(inner.named_modules()))
    walk(state, traced.graph)
    return _assemble(state, prefix, model, warn)


def _assemble(builder: BuilderState, prefix: str, model: nn.Module, warn: bool) -> DependencyGraph:
    uf = builder.uf
    by_root: dict[int, dict[tuple[str, str], list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, module, role, index in builder.members:
        by_root[uf.find(i)][(module, role)].append(index)
    fixed_roots: dict[int, FixReason] = {}
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
    group_uf = UnionFind()
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
