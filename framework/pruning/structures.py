"""Pruning structures: which weights are removed together.

A *structure* partitions a weight tensor into equally sized *groups*; the pruner ranks groups and
zeroes whole groups at a time.

``fine``
    Every weight element is its own group (group size 1). Any parameter can be pruned this way.

``filter``
    One output channel of the layer: the weights that compute that output.

``channel``
    One input channel of the layer: the weights that read that input.

``head``
    One attention head across the layers that compute it (q, k, v rows and the output projection's
    columns): only with coupled pruning (:mod:`.coupled`), which finds heads in the graph.

Exact definitions per layer type (``g`` = ``groups``, ``K`` = the kernel elements, flattened):

* ``Linear`` weight ``[O, I]``: filter ``o`` is the row ``W[o]``, channel ``c`` is the column
  ``W[:, c]``.
* ``Conv1d/2d/3d`` weight ``[O, I/g, K...]``: filter ``o`` is ``W[o]``. Channel ``c`` means input
  channel ``c``; it belongs to group ``gi = c // (I/g)`` and is read only by that group's filters,
  so channel ``c`` is ``W[gi*O/g:(gi+1)*O/g, c % (I/g)]`` - exactly the weights that physically
  removing input channel ``c`` removes. For a depthwise conv with multiplier 1 (``g = I = O``)
  filter ``c`` and channel ``c`` are the same weights ``W[c]``.
* ``ConvTranspose1d/2d/3d`` weight ``[I, O/g, K...]``: channel ``c`` (input) is ``W[c]``. Filter
  ``o`` (output) belongs to group ``gi = o // (O/g)`` and is
  ``W[gi*I/g:(gi+1)*I/g, o % (O/g)]``.

Filter and channel pruning only apply to the ``weight`` of a Conv, ConvTranspose or Linear layer;
anything else (biases, BatchNorm parameters, embeddings) raises :class:`PruningError`.

Both directions are vectorised (one reshape + permute), so the cost does not grow with the
number of groups in Python: :func:`to_groups` turns a weight into a ``[n_groups, group_size]``
matrix and :func:`expand_group_mask` turns a per-group keep vector back into a weight-shaped
boolean mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.graph.fx import CONV_LINEAR, CONVS
from framework.pruning.spec import CHANNEL, FILTER, FINE, raise_first, structure_problem


@dataclass(frozen=True)
class LayerGeometry:
    """What a layer's weight layout needs to be cut into filters or channels."""

    groups: int
    transposed: bool


def check_structure(structure: str) -> None:
    """Raise a one-line :class:`PruningError` unless ``structure`` is a known structure."""
    raise_first([structure_problem(structure)])


def is_structurable(layer: nn.Module | None, param_name: str = "weight") -> bool:
    """True when ``layer.<param_name>`` can be pruned by filter or channel."""
    return isinstance(layer, CONV_LINEAR) and param_name == "weight"


def geometry_of(layer: nn.Module | None) -> LayerGeometry:
    """Grouping and orientation of a Conv/ConvTranspose/Linear weight."""
    if isinstance(layer, CONVS):
        return LayerGeometry(groups=layer.groups, transposed=layer.transposed)
    if isinstance(layer, nn.Linear):
        return LayerGeometry(groups=1, transposed=False)
    raise PruningError(
        f"layer type {type(layer).__name__} cannot be pruned by filter or channel; "
        "allowed: Conv1d/2d/3d, ConvTranspose1d/2d/3d, Linear (use pruner.structure=fine)"
    )


def _check_geometry_inputs(structure: str, layer: nn.Module | None, shape: torch.Size) -> LayerGeometry:
    check_structure(structure)
    if structure == "nm":  # blocks, not groups of one layer axis: framework.pruning.nm ranks them
        raise PruningError("pruner.structure=nm is ranked in blocks by framework.pruning.nm, not as groups")
    if layer is None:
        raise PruningError(f"pruner.structure={structure} needs the layer that owns the weight; got none")
    geometry = geometry_of(layer)
    if len(shape) < 2:
        raise PruningError(
            f"a {len(shape)}-D tensor of shape {tuple(shape)} cannot be pruned by {structure}; "
            "only Conv/ConvTranspose/Linear weights can (use pruner.structure=fine)"
        )
    return geometry


def _split_groups(shape: torch.Size, geometry: LayerGeometry) -> tuple[int, int, int, int]:
    """Sizes ``(g, rows_per_group, cols_per_group, kernel)`` of the weight seen as
    ``[g, dim0/g, dim1, K]``, where dim0 is the grouped leading axis (O for conv, I for
    ConvTranspose) and dim1 the per-group second axis."""
    g = geometry.groups
    return g, shape[0] // g, shape[1], prod(shape[2:])


def _grouped_axis_structure(geometry: LayerGeometry) -> str:
    """The structure that the leading weight axis indexes directly (W[i] is one group)."""
    return CHANNEL if geometry.transposed else FILTER


def group_count(structure: str, layer: nn.Module | None, weight_shape: torch.Size) -> int:
    """Number of groups ``structure`` cuts a weight of ``weight_shape`` into."""
    if structure == FINE:
        check_structure(structure)
        return prod(weight_shape)
    geometry = _check_geometry_inputs(structure, layer, weight_shape)
    if structure == _grouped_axis_structure(geometry):
        return weight_shape[0]
    g, _, per_group, _ = _split_groups(weight_shape, geometry)
    return g * per_group


def to_groups(weight: torch.Tensor, structure: str, layer: nn.Module | None = None) -> torch.Tensor:
    """View ``weight`` as ``[n_groups, group_size]``; row ``i`` holds the weights of group ``i``.

    ``layer`` (the module owning the weight) is only needed for ``filter`` and ``channel``.
    The result may be a copy (when a permute is needed); it is meant for ranking, not writing.
    """
    if structure == FINE:
        check_structure(structure)
        return weight.reshape(-1, 1)
    geometry = _check_geometry_inputs(structure, layer, weight.shape)
    if structure == _grouped_axis_structure(geometry):
        return weight.reshape(weight.shape[0], -1)
    # The other axis: within each group, bring the second axis forward so that group-major,
    # then in-group index, enumerates the global channel (conv) / filter (transposed) number.
    g, rows, cols, k = _split_groups(weight.shape, geometry)
    return weight.reshape(g, rows, cols, k).permute(0, 2, 1, 3).reshape(g * cols, rows * k)


def any_per_group(mask: torch.Tensor, structure: str, layer: nn.Module | None = None) -> torch.Tensor:
    """``to_groups(mask, structure, layer).any(1)`` for a keep-mask, without regrouping (copying)
    it: a max over its bytes along contiguous axes (torch's bool ``any`` is some 40x slower on CPU)."""
    if structure == FINE or mask.numel() == 0:  # (amax refuses empty reductions)
        return to_groups(mask.bool(), structure, layer).any(1)
    geometry = _check_geometry_inputs(structure, layer, mask.shape)
    flags = mask.bool().contiguous().view(torch.uint8)
    if structure == _grouped_axis_structure(geometry):
        return flags.reshape(mask.shape[0], -1).amax(1).bool()
    g, rows, cols, k = _split_groups(mask.shape, geometry)
    return flags.reshape(g, rows, cols * k).amax(1).reshape(g * cols, k).amax(1).bool()


def any_along(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """``mask.movedim(dim, 0).reshape(mask.shape[dim], -1).any(1)`` for a keep-mask (see :func:`any_per_group`)."""
    if mask.numel() == 0:
        return mask.bool().movedim(dim, 0).reshape(mask.shape[dim], -1).any(1)
    flags = mask.bool().contiguous().view(torch.uint8)
    leading, width = prod(mask.shape[:dim]), mask.shape[dim]
    return flags.reshape(leading, width, -1).amax(0).amax(1).bool()


def expand_group_mask(
    group_keep: torch.Tensor,
    structure: str,
    layer: nn.Module | None,
    weight_shape: torch.Size | tuple[int, ...],
) -> torch.Tensor:
    """Inverse of :func:`to_groups` for masks: a bool ``[n_groups]`` keep vector becomes a bool
    mask of ``weight_shape`` that is False exactly on the weights of dropped groups."""
    weight_shape = torch.Size(weight_shape)
    expected = group_count(structure, layer, weight_shape)
    if group_keep.numel() != expected:
        raise PruningError(
            f"a {structure} mask needs {expected} entries for weight shape {tuple(weight_shape)}; "
            f"got {group_keep.numel()}"
        )
    return expand_group_values(group_keep.to(torch.bool), structure, layer, weight_shape)


def broadcast_group_values(
    values: torch.Tensor, structure: str, layer: nn.Module | None, weight_shape: torch.Size | tuple[int, ...]
) -> torch.Tensor:
    """``values[i]`` for every element of group ``i``, shaped to broadcast against a weight of
    ``weight_shape``: a view (no copy) when the groups lie along the weight's first axis, else the
    full tensor of :func:`expand_group_values`."""
    weight_shape = torch.Size(weight_shape)
    if structure != FINE and structure == _grouped_axis_structure(geometry_of(layer)):
        return values.reshape(weight_shape[0], *(1,) * (len(weight_shape) - 1))
    return expand_group_values(values, structure, layer, weight_shape)


def expand_group_values(
    values: torch.Tensor, structure: str, layer: nn.Module | None, weight_shape: torch.Size | tuple[int, ...]
) -> torch.Tensor:
    """A tensor of ``weight_shape`` holding ``values[i]`` in every element of group ``i`` (one
    value per group, any dtype): so each row of ``to_groups`` of it is constant."""
    weight_shape = torch.Size(weight_shape)
    if structure == FINE:
        return values.reshape(weight_shape)
    geometry = geometry_of(layer)
    if structure == _grouped_axis_structure(geometry):
        trailing = (1,) * (len(weight_shape) - 1)
        return values.reshape(weight_shape[0], *trailing).expand(weight_shape).contiguous()
    g, rows, cols, k = _split_groups(weight_shape, geometry)
    grid = values.reshape(g, cols, 1, 1).expand(g, cols, rows, k)
    return grid.permute(0, 2, 1, 3).reshape(weight_shape)
