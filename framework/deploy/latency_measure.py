"""Measure a :class:`~framework.pruning.budget.latency_table.LatencyTable` for a model on this machine.

Cost is the point: timing the whole model once per group and width would take groups x widths
full forward passes per repeat. Each Conv/Linear layer is timed alone instead, as a fresh layer
of the width asked on a random input of the shape it sees in the model, along each axis with the
other at full width (see the table's module docstring for how the parts are put together). Layers
of the same shape and axes (the four 64->64 convs of resnet18's first stage) are timed once.
Every width of one curve is timed interleaved with the others (the order rotating per round), so a
slow spell of a shared machine hits every width alike, and the median of ``repeats`` calls is kept.

Runtimes (:data:`RUNTIMES`): ``eager`` (PyTorch float32 on the CPU at the run's thread count),
``cuda`` (eager on the GPU, timed until its kernels finish), ``onnx_fp32`` and ``onnx_int8``
(ONNX Runtime on the CPU: each layer is written as a one-node ONNX graph, and for int8 in the QDQ
form :mod:`.quantize` produces, which ONNX Runtime fuses into its integer kernels). The whole model
is measured once, BatchNorm fused as it is deployed (:mod:`.fuse`), for the part the layers do
not account for.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from framework.analysis import cost
from framework.deploy.errors import DeployError, missing_line
from framework.deploy.fuse import fuse_batchnorm
from framework.deploy.layer_onnx import write_layer_onnx
from framework.deploy.machine import ONNX_RUNTIMES, machine_fingerprint
from framework.pruning.budget.latency_table import (
    RUNTIMES,
    Axis,
    Group,
    LatencyTable,
    TimedLayer,
    fit_rest,
    measured_widths,
    named_groups,
)
from framework.pruning.graph.dependency import build_dependency_graph
from framework.pruning.graph.groups import IN, OUT, DependencyGraph
from framework.pruning.structures import expand_group_mask
from framework.pruning.thinning.thin import thin

log = logging.getLogger(__name__)

TIMED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def runtime_problem(runtime: Any) -> str | None:
    """One line when ``runtime`` cannot be measured here (unknown, a missing extra, no GPU)."""
    if runtime not in RUNTIMES:
        return f"latency runtime {runtime!r} is invalid; allowed: {' | '.join(RUNTIMES)}"
    if runtime in ONNX_RUNTIMES:
        return missing_line(f"a latency table for runtime={runtime}")
    if runtime == "cuda" and not torch.cuda.is_available():
        return "a latency table for runtime=cuda needs a CUDA GPU, and none is visible; allowed here: eager"
    return None


# ----------------------------------------------------------------------------- the model's layers
@dataclass
class LayerShape:
    name: str
    module: nn.Module
    input_shape: tuple[int, ...]  # with the batch dimension
    output_shape: tuple[int, ...]
    in_axis: Axis
    out_axis: Axis

    @property
    def depthwise(self) -> bool:
        m = self.module
        return isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 and m.groups == m.in_channels

    def signature(self) -> tuple:
        m = self.module
        hyper = (
            (m.kernel_size, m.stride, m.padding, m.dilation, m.groups if not self.depthwise else "dw", m.padding_mode)
            if isinstance(m, nn.modules.conv._ConvNd)
            else ()
        )
        return (
            type(m).__name__,
            hyper,
            self.input_shape[2:] if self._conv else self.input_shape[1:-1],
            self.in_axis.full,
            self.out_axis.full,
            self._axis_key(self.in_axis),
            self._axis_key(self.out_axis),
        )

    @property
    def _conv(self) -> bool:
        return isinstance(self.module, nn.modules.conv._ConvNd)

    @staticmethod
    def _axis_key(axis: Axis) -> tuple:
        return (axis.group is not None, axis.per_channel, axis.share, axis.fixed)


def _layer_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, TIMED_LAYERS):

            def record(mod, inputs, output, name=name):
                shapes.setdefault(name, (tuple(inputs[0].shape), tuple(output.shape)))

            handles.append(module.register_forward_hook(record))
    try:
        with cost.evaluating(model):
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def group_axes(graph: DependencyGraph) -> tuple[dict[str, Group], dict[tuple[str, str], Axis]]:
    """The prunable channel groups of ``graph`` (:func:`named_groups`) and the axis of every
    Conv/Linear side they touch."""
    groups: dict[str, Group] = {}
    axes: dict[tuple[str, str], Axis] = {}
    for name, group in named_groups(graph).items():
        prunable = group.prunable
        touching: dict[tuple[str, str], list[int]] = {}
        for channel in prunable:
            for member in channel.members:
                if member.role in (IN, OUT):
                    touching.setdefault((member.module, member.role), []).append(len(member.indices))
        for key, counts in touching.items():
            if len(set(counts)) != 1 or key not in graph.widths:
                continue  # uneven columns per channel: left at full width (the rest covers it)
            full = graph.widths[key]
            axes[key] = Axis(
                full=full,
                group=name,
                per_channel=counts[0],
                share=len(counts) / len(prunable),
                fixed=full - counts[0] * len(counts),
            )
        groups[name] = Group(name, len(prunable), ())
    return groups, axes


def describe_layers(
    model: nn.Module, example: torch.Tensor, graph: DependencyGraph
) -> tuple[dict[str, Group], list[LayerShape]]:
    groups, axes = group_axes(graph)
    shapes = _layer_shapes(model, example)
    layers = []
    for name, module in model.named_modules():
        if name not in shapes:
            continue
        full_in = module.in_channels if isinstance(module, nn.modules.conv._ConvNd) else module.in_features
        full_out = module.out_channels if isinstance(module, nn.modules.conv._ConvNd) else module.out_features
        in_axis = axes.get((name, IN), Axis(full_in))
        out_axis = axes.get((name, OUT), Axis(full_out))
        if in_axis.full != full_in or out_axis.full != full_out:  # a view the graph counts otherwise
            in_axis, out_axis = Axis(full_in), Axis(full_out)
        layers.append(LayerShape(name, module, shapes[name][0], shapes[name][1], in_axis, out_axis))
    return groups, layers


# ----------------------------------------------------------------------------- layers at a width
def layer_at(shape: LayerShape, in_width: int, out_width: int) -> nn.Module:
    """A fresh layer like ``shape.module`` with ``in_width`` inputs and ``out_width`` outputs (with
    a bias: BatchNorm is fused into it when deployed)."""
    m = shape.module
    if isinstance(m, nn.Linear):
        return nn.Linear(in_width, out_width)
    groups = in_width if shape.depthwise else m.groups
    return type(m)(
        in_width,
        out_width,
        m.kernel_size,
        stride=m.stride,
        padding=m.padding,
        dilation=m.dilation,
        groups=groups,
        bias=True,
        padding_mode=m.padding_mode,
    )


def _input_at(shape: LayerShape, in_width: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    dims = list(shape.input_shape)
    dims[0] = batch
    dims[1 if isinstance(shape.module, nn.modules.conv._ConvNd) else -1] = in_width
    return torch.randn(dims, generator=generator)


class _Timer:
    """Builds one runnable per (layer, widths) for a runtime."""

    def __init__(self, runtime: str, threads: int, scratch: Path, clock: str = "wall"):
        self.clock = clock
        self.runtime = runtime
        self.threads = threads
        self.scratch = scratch
        self.device = torch.device("cuda" if runtime == "cuda" else "cpu")
        self._count = 0

    def runner(self, layer: nn.Module, inputs: torch.Tensor) -> Callable[[], object]:
        layer = layer.eval().to(self.device)
        for parameter in layer.parameters():
            parameter.requires_grad_(False)
        if self.runtime in ("eager", "cuda"):
            inputs = inputs.to(self.device)
            if self.runtime == "cuda":

                def run_and_wait():
                    layer(inputs)
                    torch.cuda.synchronize()

                return run_and_wait
            return lambda: layer(inputs)
        self._count += 1
        path = self.scratch / f"layer{self._count}.onnx"
        write_layer_onnx(layer, tuple(inputs.shape), path, int8=self.runtime == "onnx_int8")
        session = cost.onnx_session(path, self.threads)
        feed = {cost.ONNX_INPUT: inputs.numpy()}
        return lambda: session.run(None, feed)


# wall: what a user waits; cpu: the calling thread's CPU time, which a machine shared with other
# work does not inflate (one thread only: eager PyTorch and ONNX Runtime then compute in the caller)
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def clock_problem(clock: Any, threads: int | None, runtime: str) -> str | None:
    if clock not in CLOCKS:
        return f"latency.clock={clock!r} is invalid; allowed: {' | '.join(CLOCKS)}"
    if clock == "cpu" and (threads != 1 or runtime == "cuda"):
        return (
            f"latency.clock=cpu times one CPU thread; got latency.threads={threads} with runtime={runtime}; "
            "allowed: latency.threads=1 on a CPU runtime, or latency.clock=wall"
        )
    return None


def time_runners(
    runners: Mapping[Any, Callable[[], object]], warmup: int, repeats: int, clock: str = "wall"
) -> dict[Any, float]:
    """Median milliseconds of each runner on ``clock``, timed interleaved: every round calls each
    once, the order rotating by one per round, so a slow spell hits every runner alike."""
    samples = round_samples(runners, warmup, repeats, clock)
    return {key: float(np.median(values)) * 1e3 for key, values in samples.items()}


def relative_times(
    runners: Mapping[Any, Callable[[], object]], reference: Any, warmup: int, repeats: int, clock: str = "wall"
) -> dict[Any, float]:
    """Each runner's time over ``reference``'s in the same round, median over the rounds: on a
    machine shared with other work the level of every time moves with the load (two vCPUs of one
    core: a busy sibling doubles a thread's CPU time), the ratio of two calls a few milliseconds
    apart far less."""
    samples = round_samples(runners, warmup, repeats, clock)
    base = samples[reference]
    return {key: float(np.median([t / b for t, b in zip(values, base)])) for key, values in samples.items()}


def round_samples(
    runners: Mapping[Any, Callable[[], object]], warmup: int, repeats: int, clock: str = "wall"
) -> dict[Any, list[float]]:
    """Seconds of every call of each runner, one per round (see :func:`time_runners`)."""
    read = CLOCKS[clock]
    keys = list(runners)
    samples: dict[Any, list[float]] = {key: [] for key in keys}
    with torch.no_grad():
        for _ in range(warmup):
            for key in keys:
                runners[key]()
        for round_index in range(repeats):
            shift = round_index % len(keys)
            for key in keys[shift:] + keys[:shift]:
                start = read()
                runners[key]()
                samples[key].append(read() - start)
    return samples


# ----------------------------------------------------------------------------- the whole model
def model_runner(fused: nn.Module, sample_shape, runtime: str, threads: int, batch: int, scratch: Path):
    inputs = cost.example_input(fused, sample_shape, batch)
    if runtime in ("eager", "cuda"):
        device = torch.device("cuda" if runtime == "cuda" else "cpu")
        model = fused.to(device)
        inputs = inputs.to(device)
        if runtime == "cuda":

            def run_and_wait():
                model(inputs)
                torch.cuda.synchronize()

            return run_and_wait
        return lambda: model(inputs)
    scratch.mkdir(parents=True, exist_ok=True)
    path = cost.export_onnx(fused, sample_shape, scratch / "model.onnx")
    if runtime == "onnx_int8":
        from framework.deploy.quantize import quantize_int8

        generator = torch.Generator().manual_seed(0)
        calibration = [torch.randn((2, *sample_shape), generator=generator).numpy() for _ in range(2)]
        path = quantize_int8(path, scratch / "model_int8.onnx", calibration)
    session = cost.onnx_session(path, threads)
    feed = {cost.ONNX_INPUT: inputs.numpy()}
    return lambda: session.run(None, feed)


def model_key(groups: Mapping[str, Group], layers: Sequence[LayerShape], sample_shape, batch: int) -> str:
    """A digest of what the table describes: the layers, their shapes and axes, the groups."""
    description = {
        "sample_shape": list(sample_shape),
        "batch": batch,
        "groups": sorted((g.name, g.full) for g in groups.values()),
        "layers": [[layer.name, repr(layer.signature())] for layer in layers],
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the table
def build_latency_table(
    model: nn.Module,
    sample_shape: Sequence[int],
    runtime: str = "eager",
    threads: int | None = None,
    batch: int = 1,
    max_points: int = 32,
    warmup: int = 2,
    repeats: int = 7,
    graph: DependencyGraph | None = None,
    clock: str = "wall",
) -> LatencyTable:
    """Measure ``model``'s latency table on this machine (see the module docstring).

    ``threads``: the thread count of the run (``None``: torch's current one), used by eager
    PyTorch and ONNX Runtime alike; ``max_points``: at most this many measured widths per group
    (:func:`~framework.pruning.budget.latency_table.measured_widths`). The model is left as it was.
    """
    threads = threads or torch.get_num_threads()
    problem = runtime_problem(runtime) or clock_problem(clock, threads, runtime)
    if problem:
        raise DeployError(problem)
    started = time.perf_counter()
    shape = tuple(sample_shape)
    work = copy.deepcopy(model).cpu().eval()
    example = cost.example_input(work, shape, batch_size=max(batch, 1))
    graph = graph or build_dependency_graph(work, example, warn=False)
    groups, layers = describe_layers(work, example, graph)
    for name, group in groups.items():
        groups[name] = Group(name, group.full, measured_widths(group.full, max_points))
    with cost.torch_threads(threads), tempfile.TemporaryDirectory(prefix="secateurs-latency-") as scratch:
        timer = _Timer(runtime, threads, Path(scratch), clock)
        curves = _measure_curves(timer, layers, groups, batch, warmup, repeats)
        calibration = _measure_uniform(work, example, graph, groups, shape, timer, batch, warmup, repeats)
    timed = []
    for layer in layers:
        in_curve, out_curve, full_ms = curves[layer.signature()]
        timed.append(
            TimedLayer(
                module=layer.name,
                in_axis=layer.in_axis,
                out_axis=layer.out_axis,
                full_ms=full_ms,
                in_curve=in_curve,
                out_curve=out_curve,
                outputs_per_channel=_per_channel_outputs(layer),
            )
        )
    used = {axis.group for layer in layers for axis in (layer.in_axis, layer.out_axis) if axis.group}
    table = LatencyTable(
        runtime=runtime,
        threads=threads,
        batch=batch,
        sample_shape=shape,
        groups={name: group for name, group in groups.items() if name in used},
        layers=timed,
        model_ms=calibration[0][2],
        machine=machine_fingerprint(runtime, threads, clock),
        model_key=model_key(groups, layers, shape, batch),
    )
    residuals = [(table.volume_share(w), ms - table.layers_at(w)) for w, _, ms in calibration]
    table.rest_fixed_ms, table.rest_volume_ms = fit_rest(residuals)
    table.calibration = [(fraction, ms) for _, fraction, ms in calibration]
    table.build_seconds = time.perf_counter() - started
    return table


# the uniform width fractions at which the whole model is measured to fit the rest
CALIBRATION_FRACTIONS = (1.0, 0.6, 0.3)


def _measure_uniform(model, example, graph, groups, shape, timer: _Timer, batch, warmup, repeats):
    """``[(widths, fraction, ms)]`` of the whole model, BatchNorm fused, at uniform widths."""
    runners = {}
    chosen = {}
    for fraction in CALIBRATION_FRACTIONS:
        widths = {name: _nearest(group.widths, fraction * group.full) for name, group in groups.items()}
        chosen[fraction] = widths
        fused = fuse_batchnorm(model_at_widths(model, widths, example, graph) if fraction < 1 else model)
        runners[fraction] = model_runner(
            fused, shape, timer.runtime, timer.threads, batch, timer.scratch / f"m{fraction}"
        )
    times = time_runners(runners, warmup, repeats * 2, timer.clock)
    return [(chosen[f], f, times[f]) for f in CALIBRATION_FRACTIONS]


def _nearest(widths: Sequence[int], target: float) -> int:
    return min(widths, key=lambda w: (abs(w - target), -w))


def _per_channel_outputs(layer: LayerShape) -> int:
    dims = layer.output_shape[1:]
    if isinstance(layer.module, nn.modules.conv._ConvNd):
        return int(np.prod(dims[1:])) if len(dims) > 1 else 1
    return int(np.prod(dims[:-1])) if len(dims) > 1 else 1


def _measure_curves(timer: _Timer, layers, groups, batch: int, warmup: int, repeats: int) -> dict:
    """``{signature: (in_curve, out_curve, full_ms)}``, each distinct layer shape measured once."""
    generator = torch.Generator().manual_seed(0)
    curves: dict = {}
    for layer in layers:
        key = layer.signature()
        if key in curves:
            continue
        runners: dict[tuple[str, int], Callable[[], object]] = {}
        full_in, full_out = layer.in_axis.full, layer.out_axis.full
        runners[("full", 0)] = timer.runner(
            layer_at(layer, full_in, full_out), _input_at(layer, full_in, batch, generator)
        )
        same = layer.in_axis.group is not None and layer.in_axis.group == layer.out_axis.group
        for side, axis in (("in", layer.in_axis), ("out", layer.out_axis)):
            if axis.group is None or (same and side == "out"):
                continue
            group = groups[axis.group]
            for width in group.widths:
                if width == group.full:
                    continue
                channels = axis.width(width, group.full)
                in_w = channels if side == "in" else full_in
                out_w = channels if side == "out" or same else full_out
                if same:
                    out_w = layer.out_axis.width(width, group.full)
                runners[(side, width)] = timer.runner(
                    layer_at(layer, in_w, out_w), _input_at(layer, in_w, batch, generator)
                )
        times = time_runners(runners, warmup, repeats, timer.clock)
        full_ms = times[("full", 0)]
        curve_in = {w: t for (side, w), t in times.items() if side == "in"}
        curve_out = {w: t for (side, w), t in times.items() if side == "out"}
        for axis, curve in ((layer.in_axis, curve_in), (layer.out_axis, curve_out)):
            if axis.group is not None:
                curve[groups[axis.group].full] = full_ms
        if same:
            curve_out = dict(curve_in)
        curves[key] = (curve_in, curve_out, full_ms)
    return curves


# ----------------------------------------------------------------------------- checking a prediction
def model_at_widths(
    model: nn.Module,
    widths: Mapping[str, int],
    example: torch.Tensor,
    graph: DependencyGraph | None = None,
    ranking: Mapping[str, Sequence[int]] | None = None,
) -> nn.Module:
    """A thinned copy of ``model`` whose groups (:func:`named_groups`) keep ``widths[name]`` of
    their prunable channels: the model a table's prediction for ``widths`` describes. The kept
    channels are the first ones, or the first of ``ranking[name]`` (positions among the group's
    prunable channels, most important first)."""
    graph = graph or build_dependency_graph(model, example, warn=False)
    named = named_groups(graph)
    removed: dict[tuple[str, str], set[int]] = {}
    for name, width in widths.items():
        prunable = named[name].prunable
        order = list((ranking or {}).get(name, range(len(prunable))))
        for channel in (prunable[i] for i in order[width:]):
            for member in channel.members:
                if member.role in (IN, OUT):
                    removed.setdefault((member.module, member.role), set()).update(member.indices)
    masks: dict[str, torch.Tensor] = {}
    for (module, role), indices in removed.items():
        layer = graph.modules[module]
        flags = torch.ones(graph.widths[(module, role)], dtype=torch.bool)
        flags[sorted(indices)] = False
        structure = "filter" if role == OUT else "channel"
        weight = layer.weight
        assert isinstance(weight, torch.Tensor)  # a timed layer: Conv or Linear
        mask = expand_group_mask(flags, structure, layer, weight.shape)
        name = f"{module}.weight"
        masks[name] = mask if name not in masks else masks[name] & mask
    return thin(model, masks, example, graph=graph, check=False).model
