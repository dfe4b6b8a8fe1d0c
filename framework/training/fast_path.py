"""``compile=true`` and ``channels_last=true``: the training model made faster, the module kept.

Pruning, thinning, checkpoints and export act on the original module (``trainer.model``): the
compiled model shares its parameters, so masks written in place are what the compiled forward
reads. When thinning replaces the module, :class:`CompiledModel` compiles the new one (the old
graph was traced for other shapes).

Whether this platform can compile is checked the way torch's inductor looks for its tools, without
compiling anything: a C++ compiler (``$CXX``, else ``g++``; ``clang++`` on macOS) and Python's
headers for the CPU, triton and a GPU of compute capability 7.0 or more for CUDA.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Acceleration:
    """How the trainer's step runs on its hardware: several processes (``parallel``, a
    :class:`framework.training.ddp.DataParallel`; None: one), the precision
    (``32 | bf16-mixed | 16-mixed``), ``torch.compile`` and channels-last."""

    parallel: Any = None
    precision: str = "32"
    compile: bool = False
    channels_last: bool = False


def compile_problem(device: torch.device) -> str | None:
    """One line saying why ``torch.compile`` cannot work here (and what to do), or None."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return (
            f"compile=true: torch.compile does not support this Python ({sys.version.split()[0]}) with torch "
            f"{torch.__version__}; allowed: compile=false"
        )
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "compile=true on CUDA needs triton, which is not installed; install torch's triton (pip install triton) or use compile=false"
        major, minor = torch.cuda.get_device_capability(device)
        if major < 7:
            return f"compile=true: this GPU (compute capability {major}.{minor}) is too old for triton (7.0 or more); allowed: compile=false"
        return None
    compiler = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
    if shutil.which(compiler) is None:
        return (
            f"compile=true on the CPU needs a C++ compiler; {compiler} (from $CXX, or the default) is not on PATH; "
            "install one (apt-get install g++) or set CXX, or use compile=false"
        )
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return (
            f"compile=true on the CPU needs Python's C headers ({headers} is missing); install them "
            f"(apt-get install python{sys.version_info.major}.{sys.version_info.minor}-dev) or use compile=false"
        )
    return None


class CompiledModel:
    """``torch.compile`` of the module the trainer trains, rebuilt when that module is replaced."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._source: nn.Module | None = None
        self._compiled: nn.Module | None = None

    def __call__(self, model: nn.Module) -> nn.Module:
        if not self.enabled:
            return model
        if self._source is not model:
            self._source, self._compiled = model, torch.compile(model)  # type: ignore[assignment]  # a compiled module calls like the module
        assert self._compiled is not None
        return self._compiled


def to_channels_last(model: nn.Module) -> nn.Module:
    """4-D weights (convolutions) stored NHWC; parameters keep their identity, so the optimizer's
    references and the pruner's masks still point at them."""
    return model.to(memory_format=torch.channels_last)


def batch_to(inputs: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A batch on the device (asynchronous from pinned memory), NHWC when asked and 4-D."""
    inputs = inputs.to(device, non_blocking=True)
    if channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs
