"""Several processes, one run: the process group that ``torchrun`` asks for, and the few
collectives a run needs (broadcast and gather small objects, sum metrics).

``torchrun --nproc_per_node=N run.py ...`` starts N copies of ``run.py`` with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment. Each copy composes the same config; then
:func:`init_distributed` joins them into one process group: gloo for CPU tensors, and NCCL as
well for CUDA tensors when CUDA is present (``cpu:gloo,cuda:nccl``), so small control messages
(the run dir, an error) always travel over gloo whatever the device. Every collective gives up
after ``distributed.timeout_s``: a rank that dies or hangs ends the job instead of stalling it.

Without those variables (or with ``WORLD_SIZE=1``) nothing here starts a process group and every
helper is the identity, so a one-process run is untouched.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from framework.errors import ConfigError
from framework.process.launcher import launched_local_rank, launched_rank, launched_world_size


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files, logs and talks to MLflow."""
        return self.rank == 0


SINGLE = DistContext()


def init_distributed(timeout_s: float, backend: str = "auto") -> DistContext:
    """Join the process group torchrun described in the environment (once per process).

    ``backend``: ``auto`` (gloo, plus NCCL for CUDA tensors when CUDA is present), ``gloo`` (gloo
    for every tensor, CUDA ones too) or ``nccl`` (NCCL for CUDA tensors, gloo for CPU ones)."""
    world = launched_world_size()
    if world <= 1:
        return SINGLE
    rank = launched_rank()
    local_rank = launched_local_rank()
    os.environ.setdefault("MASTER_PORT", "29500")  # env:// needs one; torchrun always sets it
    if not dist.is_initialized():
        if backend == "nccl" and not torch.cuda.is_available():
            raise ConfigError("distributed.backend=nccl but no CUDA device is available here; allowed: auto | gloo")
        chosen = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            if backend != "gloo":
                chosen = "cpu:gloo,cuda:nccl"
        dist.init_process_group(
            backend=chosen,
            timeout=timedelta(seconds=float(timeout_s)),
            rank=rank,
            world_size=world,
            init_method="env://",
        )
    return DistContext(rank=rank, world_size=world, local_rank=local_rank)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, context: DistContext) -> torch.device:
    """``device`` of the config for this rank: with several processes on CUDA, each takes the
    GPU of its ``LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available here; allowed: auto | cpu")
    if name == "cuda" and context.enabled:
        return torch.device("cuda", context.local_rank % torch.cuda.device_count())
    return torch.device(name)


# -- collectives (identity with one process) ---------------------------------------------------


def broadcast_object(value: Any, context: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (pickled over gloo: only for our own small data)."""
    if not context.enabled:
        return value
    box = [value if context.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any, context: DistContext) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not context.enabled:
        return [value]
    out: list[Any] = [None] * context.world_size
    dist.all_gather_object(out, value)
    return out


def sum_across_ranks(values: Sequence[float], context: DistContext, device: torch.device) -> list[float]:
    """Element-wise sums over the ranks, in float64 (counts and sums of the metrics)."""
    if not context.enabled:
        return [float(v) for v in values]
    # float64 on the CPU (gloo) is exact for counts and enough for loss sums; NCCL would need the
    # tensor on the GPU, and these few numbers are not worth a device copy.
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()
