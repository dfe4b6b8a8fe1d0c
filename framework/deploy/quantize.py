"""Static int8 quantization of an ONNX model by ONNX Runtime.

Weights are quantized per output channel (signed int8), activations per tensor (unsigned int8,
scales from the min/max seen on calibration batches), written in the QDQ format (QuantizeLinear /
DequantizeLinear pairs around each op) that ONNX Runtime fuses into integer kernels on load. The
model is first put through ONNX Runtime's pre-processing (shape inference and graph
optimization), as its quantization guide asks. ``torch.ao.quantization`` is deprecated, so no
PyTorch quantization is involved: the fp32 ONNX export is the single source.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from framework.deploy.errors import DeployError, require_onnxruntime


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over an iterable of float32 arrays."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]):
        self.input_name = input_name
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:  # called by some calibrators between passes; one pass is all we make
        pass


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration: Iterable[np.ndarray]) -> Path:
    """Write the int8 QDQ model of ``fp32_path`` to ``int8_path``, calibrated on ``calibration``
    (model inputs, already preprocessed, one array per batch); returns ``int8_path``."""
    require_onnxruntime("deploy.quantize=int8")
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    calibration = [np.ascontiguousarray(batch, dtype=np.float32) for batch in calibration]
    if not calibration:
        raise DeployError(
            "int8 calibration got no batch; allowed: deploy.int8_calibration_batches >= 1 with a non-empty training set"
        )
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    reader = _Batches(input_name, calibration)
    with tempfile.TemporaryDirectory(prefix="secateurs-quant-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(int8_path),
            calibration_data_reader=reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_providers=["CPUExecutionProvider"],
        )
    return int8_path
