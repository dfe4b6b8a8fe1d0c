"""int8 that keeps its accuracy: the weight range the CPU can take, and layers left in fp32 where
int8 costs most, measured.

Two causes of an int8 model losing more accuracy than it should, and what is done about each:

* **Saturation on CPUs without VNNI.** ONNX Runtime multiplies uint8 activations by int8 weights;
  on x86 CPUs without a VNNI instruction (``avx512_vnni``, ``avx_vnni``, or AMX) the AVX2 kernel
  adds pairs of those products in 16 bits, which overflow with full 8-bit weights. ONNX Runtime's
  quantization guide asks for 7-bit weights there (``reduce_range``), which cannot overflow; with
  VNNI the products are summed in 32 bits and full 8 bits are kept. :func:`reduce_range_for`
  decides from the CPU's flags (:func:`~framework.deploy.machine.int8_feature`).
* **A layer whose activations int8 cannot hold** (a wide range with the information in a small
  part of it). When the int8 model's drop exceeds ``max_drop``, every quantizable layer is measured
  alone: the model with only that layer quantized, and what it loses on the evaluation batches.
  The layers that lose most are then kept in float32 one after another until the drop is within
  ``max_drop`` or ``max_fallback`` layers are kept (the best model found is returned either way;
  whether it is served is :mod:`.servable`'s rule). Measuring each layer quantized alone rather
  than each layer left out alone matters: two quantized layers share the quantized tensor between
  them, so leaving out either one alone changes nothing there.

Calibration (the activations' ranges) runs once: its ranges are cached in a file and every
quantization of the search reuses them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from framework.deploy.errors import DeployError, require_onnxruntime
from framework.deploy.machine import cpu_flags, int8_feature

# ONNX node types static quantization turns into integer kernels (Conv, Gemm/MatMul of Linear)
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
DEFAULT_MAX_FALLBACK = 3

Evaluate = Callable[[Path], float]  # an ONNX file -> its top-1 on the evaluation batches


@dataclass
class Int8Result:
    """The int8 model written, and how it was chosen."""

    path: Path
    top1: float  # on the evaluation batches
    drop: float  # fp32 top-1 minus int8 top-1 (0.005: half a point)
    reduce_range: bool  # 7-bit weights (a CPU without VNNI)
    kept_fp32: list[str] = field(default_factory=list)  # ONNX nodes left in float32
    lost: dict[str, float] = field(default_factory=dict)  # node -> top-1 lost when quantized alone (measured)


def reduce_range_for(flags: set[str] | None = None) -> bool:
    """7-bit weights where the CPU has no VNNI (ONNX Runtime's advice against 16-bit overflow)."""
    return int8_feature(cpu_flags() if flags is None else flags) is None


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over float32 arrays."""

    def __init__(self, input_name: str, batches: list[np.ndarray]):
        self.input_name = input_name
        self._batches = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        pass


def quantizable_nodes(path: str | Path) -> list[str]:
    """Names of the nodes of an ONNX model that static quantization turns into integer kernels."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in QUANTIZED_OPS and node.name]


class _Quantizer:
    """Quantizes one prepared fp32 model again and again with the ranges of one calibration."""

    def __init__(self, fp32_path: Path, calibration: list[np.ndarray], reduce_range: bool, scratch: Path):
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.prepared = scratch / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(self.prepared), skip_symbolic_shape=True)
        self.input_name = onnx.load(str(self.prepared), load_external_data=False).graph.input[0].name
        self.cache = scratch / "calibration.json"
        self.calibration = calibration
        self.reduce_range = reduce_range

    def __call__(self, out: Path, keep_fp32: Iterable[str] = (), only: str | None = None) -> Path:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        out.parent.mkdir(parents=True, exist_ok=True)
        reader = None if self.cache.is_file() else _Batches(self.input_name, self.calibration)
        quantize_static(
            str(self.prepared),
            str(out),
            calibration_data_reader=reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=self.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=[only] if only else None,
            nodes_to_exclude=list(keep_fp32) or None,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_providers=["CPUExecutionProvider"],
            calibration_cache_path=str(self.cache),
        )
        return out


def quantize_within(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration: Iterable[np.ndarray],
    evaluate: Evaluate,
    fp32_top1: float,
    max_drop: float,
    max_fallback: int = DEFAULT_MAX_FALLBACK,
    flags: set[str] | None = None,
) -> Int8Result:
    """Write the int8 QDQ model of ``fp32_path`` to ``int8_path`` (see the module docstring):
    7-bit weights on CPUs without VNNI, and, when its top-1 drop (``evaluate`` against
    ``fp32_top1``) exceeds ``max_drop``, up to ``max_fallback`` layers kept in float32, the ones
    that lose most first."""
    require_onnxruntime("deploy.quantize=int8")
    batches = [np.ascontiguousarray(batch, dtype=np.float32) for batch in calibration]
    if not batches:
        raise DeployError(
            "int8 calibration got no batch; allowed: deploy.int8_calibration_batches >= 1 with a non-empty training set"
        )
    int8_path = Path(int8_path)
    reduce_range = reduce_range_for(flags)
    with tempfile.TemporaryDirectory(prefix="secateurs-int8-") as scratch:
        quantize = _Quantizer(Path(fp32_path), batches, reduce_range, Path(scratch))
        top1 = evaluate(quantize(int8_path))
        result = Int8Result(int8_path, top1, fp32_top1 - top1, reduce_range)
        if result.drop <= max_drop or max_fallback < 1:
            return result
        candidate = Path(scratch) / "candidate.onnx"
        for node in quantizable_nodes(quantize.prepared):
            result.lost[node] = fp32_top1 - evaluate(quantize(candidate, only=node))
        ranked = sorted(result.lost, key=lambda n: -result.lost[n])
        best_kept, best_top1 = [], top1
        for count in range(1, min(max_fallback, len(ranked)) + 1):
            kept = ranked[:count]
            got = evaluate(quantize(candidate, kept))
            if got > best_top1:
                best_kept, best_top1 = kept, got
            if fp32_top1 - got <= max_drop:
                break
        if best_kept:
            quantize(int8_path, best_kept)
        result.kept_fp32, result.top1, result.drop = best_kept, best_top1, fp32_top1 - best_top1
    return result
