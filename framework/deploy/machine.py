"""What a latency measurement depends on besides the model: the CPU, its features, the thread
count, the clock and the library versions. A latency table measured under another fingerprint is
stale; the int8 feature decides whether ONNX Runtime's int8 kernels beat its float32 ones."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

ONNX_RUNTIMES = ("onnx_fp32", "onnx_int8")
# the CPU features that decide whether ONNX Runtime's int8 kernels beat its float32 ones, best first
INT8_FEATURES = ("amx_int8", "avx512_vnni", "avx_vnni")
_MACHINE_FLAGS = ("avx2", "avx512f", *INT8_FEATURES)


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

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
