"""One Conv/Linear layer written as a one-node ONNX graph (float32, or int8 in the QDQ form), so
that a latency table can time each layer alone in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from framework.analysis import cost
from framework.deploy.errors import DeployError


def write_layer_onnx(layer: nn.Module, input_shape: tuple[int, ...], path: Path, int8: bool) -> Path:
    """One Conv/Linear layer as an ONNX graph (input ``input``, output ``output``); with ``int8``
    in the QDQ form of :mod:`.quantize` (uint8 activations per tensor, int8 weights per output
    channel), which ONNX Runtime fuses into an integer kernel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
        raise DeployError(f"a latency table writes Conv and Linear layers as ONNX, not {type(layer).__name__}")
    weight = layer.weight.detach().numpy()
    bias = layer.bias.detach().numpy() if layer.bias is not None else np.zeros(weight.shape[0], np.float32)
    nodes: list = []
    inits = [numpy_helper.from_array(bias.astype(np.float32), "bias")]
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


def _conv_attributes(layer: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> dict:
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
