"""A model's Conv/Linear MACs or parameters as a function of its groups' widths, in the form of a
latency table (``unit="MMAC"`` or ``"Mparams"``), so that one allocation serves a MAC, a parameter
and a latency budget."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
from torch import nn

from framework.analysis import cost
from framework.deploy.latency_measure import LayerShape, describe_layers, model_key
from framework.pruning.budget.latency_table import Group, LatencyTable, TimedLayer, measured_widths
from framework.pruning.graph.dependency import build_dependency_graph


def layer_macs(shape: LayerShape, in_width: int, out_width: int) -> float:
    """Multiply-accumulates of one sample through ``shape``'s layer at these widths (millions)."""
    m = shape.module
    if isinstance(m, nn.Linear):
        positions = int(np.prod(shape.output_shape[1:-1])) if len(shape.output_shape) > 2 else 1
        return positions * in_width * out_width / 1e6
    assert isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)
    groups = in_width if shape.depthwise else m.groups
    positions = int(np.prod(shape.output_shape[2:]))
    return positions * out_width * (in_width // groups) * int(np.prod(m.kernel_size)) / 1e6


def layer_params(shape: LayerShape, in_width: int, out_width: int) -> float:
    """Parameters of ``shape``'s layer at these widths, weight and bias (millions): what thinning
    it to these widths leaves (a BatchNorm after it adds 2 per output channel, not counted here)."""
    m = shape.module
    bias = out_width if getattr(m, "bias", None) is not None else 0
    if isinstance(m, nn.Linear):
        return (in_width * out_width + bias) / 1e6
    assert isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)
    groups = in_width if shape.depthwise else m.groups
    return (out_width * (in_width // groups) * int(np.prod(m.kernel_size)) + bias) / 1e6


def mac_table(model: nn.Module, sample_shape: Sequence[int], max_points: int = 10**9) -> LatencyTable:
    """The model's Conv/Linear MACs as a function of its groups' widths, counted from the layers'
    shapes (exact: a layer's MACs are proportional to its input and output widths), in the form
    of a latency table (``unit="MMAC"``), so one allocation serves a MAC and a latency budget."""
    return count_table(model, sample_shape, layer_macs, "macs", "MMAC", max_points)


def params_table(model: nn.Module, sample_shape: Sequence[int], max_points: int = 10**9) -> LatencyTable:
    """The model's Conv/Linear parameters (weights and biases) as a function of its groups' widths,
    counted from the layers' shapes (exact), in the form of a latency table (``unit="Mparams"``)."""
    return count_table(model, sample_shape, layer_params, "params", "Mparams", max_points)


def count_table(
    model: nn.Module,
    sample_shape: Sequence[int],
    count: Callable[[LayerShape, int, int], float],
    runtime: str,
    unit: str,
    max_points: int = 10**9,
) -> LatencyTable:
    """A cost table whose layers' figures are ``count(layer, in_width, out_width)`` (exact: no
    rest, nothing measured)."""
    shape = tuple(sample_shape)
    work = copy.deepcopy(model).cpu().eval()
    example = cost.example_input(work, shape, batch_size=1)
    graph = build_dependency_graph(work, example, warn=False)
    groups, layers = describe_layers(work, example, graph)
    groups = {name: Group(name, g.full, measured_widths(g.full, max_points)) for name, g in groups.items()}
    timed = []
    for layer in layers:
        full_in, full_out = layer.in_axis.full, layer.out_axis.full
        full = count(layer, full_in, full_out)
        same = layer.in_axis.group is not None and layer.in_axis.group == layer.out_axis.group
        curves = []
        for side, axis in (("in", layer.in_axis), ("out", layer.out_axis)):
            curve = {}
            if axis.group is not None:
                group = groups[axis.group]
                for width in group.widths:
                    channels = axis.width(width, group.full)
                    if same:
                        curve[width] = count(layer, channels, layer.out_axis.width(width, group.full))
                    else:
                        curve[width] = count(
                            layer, channels if side == "in" else full_in, channels if side == "out" else full_out
                        )
            curves.append(curve)
        timed.append(TimedLayer(layer.name, layer.in_axis, layer.out_axis, full, curves[0], curves[1]))
    used = {axis.group for layer in layers for axis in (layer.in_axis, layer.out_axis) if axis.group}
    return LatencyTable(
        runtime=runtime,
        threads=1,
        batch=1,
        sample_shape=shape,
        groups={name: group for name, group in groups.items() if name in used},
        layers=timed,
        model_ms=sum(layer.full_ms for layer in timed),
        model_key=model_key(groups, layers, shape, 1),
        unit=unit,
    )
