"""The training loop's side of several processes: :class:`DataParallel` is the trainer's
``parallel``. It wraps the model in ``DistributedDataParallel`` for the training steps (gradients
averaged over the ranks; the wrapper is rebuilt when the model is replaced), gives every rank
rank 0's buffers (BatchNorm statistics) before evaluation, and sums metrics over the ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from framework.process.distributed import DistContext, sum_across_ranks


class DataParallel:
    """What the trainer calls when ``world_size > 1``."""

    def __init__(self, context: DistContext, device: torch.device, sync_batchnorm: bool = False):
        self.context = context
        self.device = device
        self.sync_batchnorm = sync_batchnorm
        self._wrapped: nn.Module | None = None
        self._wrapped_of: nn.Module | None = None

    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel(model)``, built once per model (a collective: every rank
        calls it at the same point; it also copies rank 0's parameters and buffers to all)."""
        if self._wrapped_of is not model:
            from torch.nn.parallel import DistributedDataParallel

            if self.sync_batchnorm:
                # Swaps the BatchNorm children in place (same parameter and buffer tensors), so
                # every reference to a module and the checkpoint's keys still hold.
                converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
                assert converted is model or not isinstance(model, nn.modules.batchnorm._BatchNorm)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._wrapped = DistributedDataParallel(
                model, device_ids=device_ids
            )  # buffers synced at each forward (the default)
            self._wrapped_of = model
        assert self._wrapped is not None  # built above for this model
        return self._wrapped

    @torch.no_grad()
    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers on every rank: evaluation, BN-folded ranking, thinning and the
        checkpoint all see the statistics rank 0 has."""
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    def sum_across_ranks(self, values: list[float]) -> list[float]:
        return sum_across_ranks(values, self.context, self.device)
