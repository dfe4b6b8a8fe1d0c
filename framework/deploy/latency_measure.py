"""Measure a :class:`~framework.pruning.latency_table.LatencyTable` for a model on this machine.

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
import platform
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
from framework.pruning.dependency import IN, OUT, DependencyGraph, build_dependency_graph
from framework.pruning.latency_table import (
    RUNTIMES,
    Axis,
    Group,
    LatencyTable,
    TimedLayer,
    fit_rest,
    measured_widths,
    named_groups,
)
from framework.pruning.structures import expand_group_mask
from framework.pruning.thinning import thin

log = logging.getLogger(__name__)

ONNX_RUNTIMES = ("onnx_fp32", "onnx_int8")
TIMED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# the CPU features that decide whether ONNX Runtime's int8 kernels beat its float32 ones, best first
INT8_FEATURES = ("amx_int8", "avx512_vnni", "avx_vnni")
_MACHINE_FLAGS = ("avx2", "avx512f", *INT8_FEATURES)


# ----------------------------------------------------------------------------- the machine
def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def int8_feature(flags: set[str] | None = None) -> str | None:
    """The best CPU feature for int8 kernels this machine has (None: plain AVX2 or less)."""
    flags = cpu_flags() if flags is None else flags
    return next((name for name in INT8_FEATURES if name in flags), None)


def machine_fingerprint(runtime: str, threads: int, clock: str = "wall") -> dict[str, Any]:
    """What a latency table's figures depend on besides the model: CPU, features, thread count,
    clock, library versions (and the GPU for ``cuda``). A table measured under another is stale."""
    flags = cpu_flags()
    fingerprint: dict[str, Any] = {
        "clock": clock,
        "cpu": cpu_name(),
        "cpu_features": sorted(f for f in _MACHINE_FLAGS if f in flags),
        "logical_cpus": _logical_cpus(),
        "threads": threads,
        "torch": torch.__version__,
    }
    if runtime in ONNX_RUNTIMES:
        import onnxruntime

        fingerprint["onnxruntime"] = onnxruntime.__version__
    if runtime == "cuda":
        fingerprint["gpu"] = torch.cuda.get_device_name(0)
    return fingerprint


def _logical_cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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
class _LayerShape:
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
) -> tuple[dict[str, Group], list[_LayerShape]]:
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
        layers.append(_LayerShape(name, module, shapes[name][0], shapes[name][1], in_axis, out_axis))
    return groups, layers


# ----------------------------------------------------------------------------- layers at a width
def layer_at(shape: _LayerShape, in_width: int, out_width: int) -> nn.Module:
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


def _input_at(shape: _LayerShape, in_width: int, batch: int, generator: torch.Generator) -> torch.Tensor:
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
    return {key: float(np.median(values)) * 1e3 for key, values in samples.items()}


# ----------------------------------------------------------------------------- ONNX layers
def write_layer_onnx(layer: nn.Module, input_shape: tuple[int, ...], path: Path, int8: bool) -> Path:
    """One Conv/Linear layer as an ONNX graph (input ``input``, output ``output``); with ``int8``
    in the QDQ form of :mod:`.quantize` (uint8 activations per tensor, int8 weights per output
    channel), which ONNX Runtime fuses into an integer kernel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = layer.weight.detach().numpy()
    bias = layer.bias.detach().numpy() if layer.bias is not None else np.zeros(weight.shape[0], np.float32)
    nodes, inits = [], [numpy_helper.from_array(bias.astype(np.float32), "bias")]
    x = cost.ONNX_INPUT
    if int8:
        nodes, inits, x = _quantized_input(nodes, inits, x, helper, numpy_helper)
        w_scale = np.maximum(np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1) / 127.0, 1e-8).astype(np.float32)
        shape = (-1,) + (1,) * (weight.ndim - 1)
        w_int8 = np.clip(np.round(weight / w_scale.reshape(shape)), -127, 127).astype(np.int8)
        inits += [
            numpy_helper.from_array(w_int8, "weight_q"),
            numpy_helper.from_array(w_scale, "weight_scale"),
            numpy_helper.from_array(np.zeros(weight.shape[0], np.int8), "weight_zero"),
        ]
        nodes.append(
            helper.make_node("DequantizeLinear", ["weight_q", "weight_scale", "weight_zero"], ["weight"], axis=0)
        )
    else:
        inits.append(numpy_helper.from_array(weight.astype(np.float32), "weight"))
    y = "y_float" if int8 else cost.ONNX_OUTPUT
    if isinstance(layer, nn.Linear):
        if len(input_shape) == 2:
            nodes.append(helper.make_node("Gemm", [x, "weight", "bias"], [y], transB=1))
        else:
            nodes.append(helper.make_node("Transpose", ["weight"], ["weight_t"], perm=[1, 0]))
            nodes.append(helper.make_node("MatMul", [x, "weight_t"], ["matmul"]))
            nodes.append(helper.make_node("Add", ["matmul", "bias"], [y]))
    else:
        nodes.append(helper.make_node("Conv", [x, "weight", "bias"], [y], **_conv_attributes(layer)))
    if int8:
        nodes, inits, _ = _quantized_input(nodes, inits, y, helper, numpy_helper, prefix="out", final=cost.ONNX_OUTPUT)
    output_shape = [d if i else None for i, d in enumerate(_output_shape(layer, input_shape))]
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info(cost.ONNX_INPUT, TensorProto.FLOAT, [None, *input_shape[1:]])],
        [helper.make_tensor_value_info(cost.ONNX_OUTPUT, TensorProto.FLOAT, output_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", cost.DEFAULT_ONNX_OPSET)])
    model.ir_version = min(model.ir_version, 9)
    onnx.save(model, str(path))
    return path


def _quantized_input(nodes, inits, x, helper, numpy_helper, prefix="in", final=None):
    """x -> QuantizeLinear -> DequantizeLinear (uint8, one scale: the QDQ pair around activations)."""
    inits = inits + [
        numpy_helper.from_array(np.array(0.05, np.float32), f"{prefix}_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), f"{prefix}_zero"),
    ]
    out = final or f"{prefix}_dq"
    nodes = nodes + [
        helper.make_node("QuantizeLinear", [x, f"{prefix}_scale", f"{prefix}_zero"], [f"{prefix}_q"]),
        helper.make_node("DequantizeLinear", [f"{prefix}_q", f"{prefix}_scale", f"{prefix}_zero"], [out]),
    ]
    return nodes, inits, out


def _conv_attributes(layer: nn.Module) -> dict:
    if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
        raise DeployError(
            f"a latency table cannot write {type(layer).__name__} with padding={layer.padding!r} "
            f"padding_mode={layer.padding_mode!r} as ONNX; use runtime=eager"
        )
    return {
        "kernel_shape": list(layer.kernel_size),
        "strides": list(layer.stride),
        "pads": list(layer.padding) * 2,
        "dilations": list(layer.dilation),
        "group": layer.groups,
    }


def _output_shape(layer: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(layer(torch.zeros((1, *input_shape[1:]))).shape)


# ----------------------------------------------------------------------------- the whole model
def _model_runner(fused: nn.Module, sample_shape, runtime: str, threads: int, batch: int, scratch: Path):
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


def model_key(groups: Mapping[str, Group], layers: Sequence[_LayerShape], sample_shape, batch: int) -> str:
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
    (:func:`~framework.pruning.latency_table.measured_widths`). The model is left as it was.
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
        runners[fraction] = _model_runner(
            fused, shape, timer.runtime, timer.threads, batch, timer.scratch / f"m{fraction}"
        )
    times = time_runners(runners, warmup, repeats * 2, timer.clock)
    return [(chosen[f], f, times[f]) for f in CALIBRATION_FRACTIONS]


def _nearest(widths: Sequence[int], target: float) -> int:
    return min(widths, key=lambda w: (abs(w - target), -w))


def _per_channel_outputs(layer: _LayerShape) -> int:
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
        mask = expand_group_mask(flags, structure, layer, layer.weight.shape)
        name = f"{module}.weight"
        masks[name] = mask if name not in masks else masks[name] & mask
    return thin(model, masks, example, graph=graph, check=False).model


# ----------------------------------------------------------------------------- the cache
@dataclass
class CachedTable:
    """A table from :func:`cached_latency_table`: ``status`` is ``"cached"`` (read back),
    ``"measured"`` (no table before) or ``"rebuilt"`` (the one on disk was stale: ``reason``)."""

    table: LatencyTable
    path: Path
    status: str
    reason: str | None = None


def table_path(cache_dir: str | Path, name: str, runtime: str, threads: int, batch: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Path(cache_dir) / f"{safe}-{runtime}-t{threads}-b{batch}.json"


def stale_reason(table: LatencyTable, key: str, machine: Mapping[str, Any]) -> str | None:
    """Why a table read from disk no longer describes this model on this machine (None: it does)."""
    if table.model_key != key:
        return "the model's layers or widths differ from the ones it was measured for"
    changed = [k for k in sorted(set(machine) | set(table.machine)) if machine.get(k) != table.machine.get(k)]
    if changed:
        shown = "; ".join(f"{k}: {table.machine.get(k)!r} -> {machine.get(k)!r}" for k in changed[:3])
        return f"it was measured on another machine or software ({shown})"
    return None


def cached_latency_table(
    model: nn.Module,
    sample_shape: Sequence[int],
    cache_dir: str | Path,
    name: str,
    runtime: str = "eager",
    threads: int | None = None,
    batch: int = 1,
    clock: str = "wall",
    **measure: Any,
) -> CachedTable:
    """The latency table of ``model`` from ``cache_dir`` when one was measured for this model,
    runtime and machine; else measured now (:func:`build_latency_table`, ``measure`` passed on)
    and saved there. A stale table (another architecture, machine, thread count or library
    version) is rebuilt and the reason logged as a warning."""
    threads = threads or torch.get_num_threads()
    problem = runtime_problem(runtime) or clock_problem(clock, threads, runtime)
    if problem:
        raise DeployError(problem)
    shape = tuple(sample_shape)
    work = copy.deepcopy(model).cpu().eval()
    example = cost.example_input(work, shape, batch_size=max(batch, 1))
    graph = build_dependency_graph(work, example, warn=False)
    groups, layers = describe_layers(work, example, graph)
    key = model_key(groups, layers, shape, batch)
    path = table_path(cache_dir, name, runtime, threads, batch)
    reason = None
    if path.is_file():
        try:
            stored = LatencyTable.load(path)
        except (ValueError, KeyError, TypeError) as error:
            reason = f"it cannot be read ({error})"
        else:
            reason = stale_reason(stored, key, machine_fingerprint(runtime, threads, clock))
            if reason is None:
                return CachedTable(stored, path, "cached")
        log.warning("latency table %s is stale: %s; measuring it again", path, reason)
    table = build_latency_table(work, shape, runtime, threads, batch, graph=graph, clock=clock, **measure)
    table.save(path)
    return CachedTable(table, path, "rebuilt" if reason else "measured", reason)


# ----------------------------------------------------------------------------- MACs in the same form
def layer_macs(shape: _LayerShape, in_width: int, out_width: int) -> float:
    """Multiply-accumulates of one sample through ``shape``'s layer at these widths (millions)."""
    m = shape.module
    if isinstance(m, nn.Linear):
        positions = int(np.prod(shape.output_shape[1:-1])) if len(shape.output_shape) > 2 else 1
        return positions * in_width * out_width / 1e6
    groups = in_width if shape.depthwise else m.groups
    positions = int(np.prod(shape.output_shape[2:]))
    return positions * out_width * (in_width // groups) * int(np.prod(m.kernel_size)) / 1e6


def mac_table(model: nn.Module, sample_shape: Sequence[int], max_points: int = 10**9) -> LatencyTable:
    """The model's Conv/Linear MACs as a function of its groups' widths, counted from the layers'
    shapes (exact: a layer's MACs are proportional to its input and output widths), in the form
    of a latency table (``unit="MMAC"``), so one allocation serves a MAC and a latency budget."""
    shape = tuple(sample_shape)
    work = copy.deepcopy(model).cpu().eval()
    example = cost.example_input(work, shape, batch_size=1)
    graph = build_dependency_graph(work, example, warn=False)
    groups, layers = describe_layers(work, example, graph)
    groups = {name: Group(name, g.full, measured_widths(g.full, max_points)) for name, g in groups.items()}
    timed = []
    for layer in layers:
        full_in, full_out = layer.in_axis.full, layer.out_axis.full
        full = layer_macs(layer, full_in, full_out)
        same = layer.in_axis.group is not None and layer.in_axis.group == layer.out_axis.group
        curves = []
        for side, axis in (("in", layer.in_axis), ("out", layer.out_axis)):
            curve = {}
            if axis.group is not None:
                group = groups[axis.group]
                for width in group.widths:
                    channels = axis.width(width, group.full)
                    if same:
                        curve[width] = layer_macs(layer, channels, layer.out_axis.width(width, group.full))
                    else:
                        curve[width] = layer_macs(
                            layer, channels if side == "in" else full_in, channels if side == "out" else full_out
                        )
            curves.append(curve)
        timed.append(TimedLayer(layer.name, layer.in_axis, layer.out_axis, full, curves[0], curves[1]))
    used = {axis.group for layer in layers for axis in (layer.in_axis, layer.out_axis) if axis.group}
    return LatencyTable(
        runtime="macs",
        threads=1,
        batch=1,
        sample_shape=shape,
        groups={name: group for name, group in groups.items() if name in used},
        layers=timed,
        model_ms=sum(layer.full_ms for layer in timed),
        model_key=model_key(groups, layers, shape, 1),
        unit="MMAC",
    )
