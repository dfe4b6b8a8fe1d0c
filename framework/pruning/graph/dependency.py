"""Dependency groups: which channels across layers must be removed together.

Removing output channel ``c`` of a convolution only yields a smaller network that computes the same
function if everything else that touches channel ``c`` of that tensor goes with it. This module reads
the model's ``torch.fx`` graph (shapes from :func:`.shapes.record_shapes`, a lighter ShapeProp, on an
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

from framework.errors import PruningError, short_reason
from framework.pruning.graph.channels import paused_gc
from framework.pruning.graph.constants import AttributeResize, resolve_sites, trace_with_origins, uses
from framework.pruning.graph.fx import CONVS, trace_failure, unwrap
from framework.pruning.graph.groups import (
    KEPT_ATTRIBUTE_REASON,
    NORM,
    OUT,
    PARAM,
    STRUCTURAL_REASONS,
    DependencyGraph,
    DependencyGroup,
    Exclusion,
    MemberTable,
    ResizedAttribute,
)
from framework.pruning.graph.ops import walk
from framework.pruning.graph.shapes import record_shapes
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


def propagate_shapes(model: nn.Module, example_input, needed_by: str) -> tuple[torch.fx.Graph, set[tuple[str, str]]]:
    """Trace ``model`` in eval mode (sizes written as module attributes keep their origin, see
    :mod:`.constants`) and record every node's output shape, running it once; also returns the
    attributes Python consumed while tracing.

    The model's train/eval flags are restored afterwards and no gradient or BatchNorm statistic
    changes: the trace and the run are in eval mode under no_grad (a module that calls
    ``F.batch_norm`` itself, as timm's BatchNormAct2d does, would otherwise be traced with its
    training branch, which updates the running statistics).
    """
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        try:
            graph, consumed = trace_with_origins(model)
        except Exception as exc:  # fx raises many types (TraceError, TypeError, ...); all mean the same
            raise trace_failure(model, exc, needed_by, "use coupling=layer") from exc
        with torch.no_grad():
            record_shapes(model, graph, *inputs)
    except PruningError:
        raise
    except Exception as exc:
        reason = short_reason(exc)
        shapes = [tuple(t.shape) for t in inputs if isinstance(t, torch.Tensor)]
        raise PruningError(
            f"{needed_by} runs {type(model).__name__} once on an example input of shape {shapes} and it failed "
            f"({reason}); pass example_input or input_shape that the model accepts"
        ) from exc
    finally:
        for module, mode in modes.items():
            module.training = mode
    return graph, consumed


def build_dependency_graph(model: nn.Module, example_input=None, warn: bool = True) -> DependencyGraph:
    """Trace ``model``, propagate shapes from ``example_input`` (inferred when None, see
    :func:`infer_example_input`) and return its dependency groups.

    Warns once per unknown op (naming the op and the layers it keeps whole) when ``warn``.
    """
    inner, prefix = unwrap(model)
    if example_input is None:
        example_input = infer_example_input(inner)
    graph, consumed = propagate_shapes(inner, example_input, needed_by="coupled structured pruning")
    with paused_gc():
        state = BuilderState(dict(inner.named_modules()), consumed)
        walk(state, graph)
        state.settle_parameter_reads()
        state.fix_sizes_read_as_numbers(graph)
        resizes = _resolve_sites(state, graph)
        return _assemble(state, prefix, model, warn, resizes)


def _resolve_sites(state: BuilderState, graph: torch.fx.Graph) -> list[AttributeResize]:
    """Sizes written as module attributes: the rewritable ones, and the channels of the others fixed."""
    resizes, kept = resolve_sites(state.size_sites, uses(graph), state.consumed, state.uf)
    for (module, attribute), ids, nodes in kept:
        op = f"attribute '{module + '.' if module else ''}{attribute}'"
        state.sites[op].extend(nodes)
        state.fix(ids, op, KEPT_ATTRIBUTE_REASON, True)
    return resizes


def _assemble(
    builder: BuilderState, prefix: str, model: nn.Module, warn: bool, resizes: list[AttributeResize]
) -> DependencyGraph:
    """The walk's union-find turned into dependency groups, by tensor ops over every layer role's
    ids: each set of united ids that some layer role holds is a coupled channel; channels sharing a
    layer role form a group (connected components); each group keeps its members as a table."""
    root_list = builder.uf.roots()
    roots = torch.tensor(root_list, dtype=torch.long)
    keys = sorted(builder.module_ids)
    key_roots = [roots[torch.tensor(builder.module_ids[key], dtype=torch.long)] for key in keys]
    unique = torch.unique(torch.cat(key_roots)) if keys else torch.zeros(0, dtype=torch.long)
    key_channels = [torch.searchsorted(unique, r) for r in key_roots]
    group_of, position_of, sizes = _components(key_channels, unique.numel())
    # why each fixed channel is fixed, as a code into `reasons` ((op, reason) -> loud if any is)
    reasons: dict[tuple[str, str], bool] = {}
    codes = [-1] * unique.numel()
    fixed = sorted(_fixed_reasons(builder, root_list).items())
    for (_, (op, reason, loud)), channel in zip(fixed, _channels_of(unique, [root for root, _ in fixed])):
        if channel is not None:
            codes[channel] = list(reasons).index((op, reason)) if (op, reason) in reasons else len(reasons)
            reasons[(op, reason)] = reasons.get((op, reason), False) or loud
    code = torch.tensor(codes, dtype=torch.long)
    head = torch.zeros(unique.numel(), dtype=torch.bool)
    heads = [c for c in _channels_of(unique, [root_list[i] for i in builder.head_ids]) if c is not None]
    head[heads] = True
    starts = torch.cumsum(sizes, 0) - sizes
    order = torch.argsort(group_of * max(unique.numel(), 1) + torch.arange(unique.numel()))
    tables: list[MemberTable] = [MemberTable([], [], []) for _ in range(sizes.numel())]
    layers: dict[int, set[str]] = defaultdict(set)
    for key, channels in zip(keys, key_channels):
        group = int(group_of[channels[0]])
        positions, sort = torch.sort(position_of[channels], stable=True)
        tables[group].keys.append((prefix + key[0], key[1]))
        tables[group].positions.append(positions)
        tables[group].indices.append(sort)
        if key[1] != NORM:
            for c in torch.unique(code[channels]).tolist():
                if c >= 0:
                    layers[c].add(prefix + key[0])
    groups = []
    for g, table in enumerate(tables):
        members = order[int(starts[g]) : int(starts[g] + sizes[g])]
        groups.append(DependencyGroup(_group_name(table), table, code[members] >= 0, head[members]))
    result = [
        Exclusion(op, reason, tuple(sorted(layers[c])), loud, tuple(builder.sites.get(op, ())))
        for c, ((op, reason), loud) in enumerate(reasons.items())
    ]
    if warn:
        _warn(result)
    widths = {(prefix + module, role): len(ids) for (module, role), ids in builder.module_ids.items()}
    param_dims = {prefix + name: dim for name, dim in builder.param_dims.items()}
    parameters = {name: p for name, p in model.named_parameters() if name in param_dims}
    attributes = [
        ResizedAttribute(
            prefix + (f"{r.module}.{r.attribute}" if r.module else r.attribute),
            r,
            _units(unique, [root_list[i] for i in r.positions], group_of, position_of),
        )
        for r in resizes
    ]
    return DependencyGraph(groups, result, widths, dict(model.named_modules()), param_dims, parameters, attributes)


def _channels_of(unique: torch.Tensor, roots: list[int]) -> list[int | None]:
    """The coupled channel whose ids have each root (None: no layer role holds them)."""
    if not roots or not unique.numel():
        return [None] * len(roots)
    wanted = torch.tensor(roots, dtype=torch.long)
    at = torch.searchsorted(unique, wanted).clamp(max=unique.numel() - 1)
    hit = unique[at] == wanted
    return [a if h else None for a, h in zip(at.tolist(), hit.tolist())]


def _units(
    unique: torch.Tensor, roots: list[int], group_of: torch.Tensor, position_of: torch.Tensor
) -> list[tuple[int, int] | None]:
    return [None if c is None else (int(group_of[c]), int(position_of[c])) for c in _channels_of(unique, roots)]


def _components(key_channels: list[torch.Tensor], count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Channels that share a layer role, transitively: per channel its group (numbered in the order
    of each group's first channel) and its position in the group, and each group's size."""
    label = torch.arange(count)
    if key_channels:
        edge_key = torch.cat([torch.full((c.numel(),), k, dtype=torch.long) for k, c in enumerate(key_channels)])
        edge_channel = torch.cat(key_channels)
        while True:  # min-label propagation through the layer roles, with pointer jumping
            per_key = torch.full((len(key_channels),), count, dtype=torch.long)
            per_key = per_key.scatter_reduce(0, edge_key, label[edge_channel], "amin")
            new = label.scatter_reduce(0, edge_channel, per_key[edge_key], "amin")
            new = new[new]
            if torch.equal(new, label):
                break
            label = new
    _, group_of, sizes = torch.unique(label, return_inverse=True, return_counts=True)
    order = torch.argsort(group_of * max(count, 1) + torch.arange(count))
    starts = torch.cumsum(sizes, 0) - sizes
    position_of = torch.empty(count, dtype=torch.long)
    position_of[order] = torch.arange(count) - starts[group_of[order]]
    return group_of, position_of, sizes


def _group_name(table: MemberTable) -> str:
    """The first producer (of the group's earliest channel that has one), else the first layer of
    its first channel, for messages."""
    producers = [(int(p[0]), key) for key, p in zip(table.keys, table.positions) if key[1] == OUT]
    if producers:
        return min(producers)[1][0]
    first = [key for key, p in zip(table.keys, table.positions) if int(p[0]) == 0]
    layers = [key for key in first if key[1] != PARAM]
    return (layers or first)[0][0]


def _fixed_reasons(builder: BuilderState, roots: list[int]) -> dict[int, FixReason]:
    """Why each fixed coupled channel is fixed: a warning reason wins over a silent one, so the
    user hears about unknown ops; but where the channels could never go anyway (a LayerNorm over
    them), that reason is the one given."""
    fixed_roots: dict[int, FixReason] = {}
    structural = {roots[i]: why for i, why in builder.fixed.items() if why[1] in STRUCTURAL_REASONS}
    for i, why in builder.fixed.items():
        root = roots[i]
        if root in structural:
            fixed_roots[root] = structural[root]
        elif root not in fixed_roots or (why[2] and not fixed_roots[root][2]):
            fixed_roots[root] = why
    return fixed_roots


def _warn(exclusions: list[Exclusion]) -> None:
    for exclusion in exclusions:
        if exclusion.warned:
            shown = ", ".join(exclusion.layers[:8]) + (" ..." if len(exclusion.layers) > 8 else "")
            sites = exclusion.sites
            where = f" (at {', '.join(sites[:3])}{' ...' if len(sites) > 3 else ''})" if len(sites) > 1 else ""
            warnings.warn(
                f"{exclusion.op}{where}: {exclusion.reason}; the channels into and out of it are not pruned "
                f"(layers that keep those channels: {shown or 'none'})",
                stacklevel=4,
            )
