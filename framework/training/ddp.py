"""The training loop's side of several processes: DistributedDataParallel around the model, and a
hook that keeps the pruning masks identical on every rank and proves it.

* :class:`DataParallel` is the trainer's ``parallel``: it wraps the model in
  ``DistributedDataParallel`` for the training steps (gradients averaged over the ranks; the
  wrapper is rebuilt when thinning replaces the model), gives every rank rank 0's buffers
  (BatchNorm statistics) before evaluation, and sums metrics over the ranks.
* :class:`MaskSync` runs after every mask update: rank 0's masks are broadcast and put in force
  on every rank, then every rank's fingerprint (a hash of the masks, and the count of pruned
  positions that hold a nonzero weight) is gathered and compared; any difference stops the run.
  Rank 0 writes the fingerprints to ``<run dir>/distributed.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from framework.distributed import (
    DistContext,
    broadcast_masks,
    gather_objects,
    masks_fingerprint,
    sum_across_ranks,
)
from framework.errors import SecateursError
from framework.training.hooks import Hook

RECORD_FILE = "distributed.json"


class RanksDisagreeError(SecateursError):
    """The ranks' masks or weights differ: the run cannot go on as one model."""


class DataParallel:
    """What the trainer calls when ``world_size > 1``."""

    def __init__(self, context: DistContext, device: torch.device, sync_batchnorm: bool = False):
        self.context = context
        self.device = device
        self.sync_batchnorm = sync_batchnorm
        self._wrapped: Optional[nn.Module] = None
        self._wrapped_of: Optional[nn.Module] = None

    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel(model)``, built once per model (a collective: every rank
        calls it at the same point; it also copies rank 0's parameters and buffers to all)."""
        if self._wrapped_of is not model:
            from torch.nn.parallel import DistributedDataParallel

            if self.sync_batchnorm:
                # Swaps the BatchNorm children in place (same parameter and buffer tensors), so
                # masks, fold pairs and the checkpoint's keys still refer to them.
                converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
                assert converted is model or not isinstance(model, nn.modules.batchnorm._BatchNorm)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._wrapped = DistributedDataParallel(model, device_ids=device_ids)  # buffers synced at each forward (the default)
            self._wrapped_of = model
        return self._wrapped

    @torch.no_grad()
    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers on every rank: evaluation, BN-folded ranking, thinning and the
        checkpoint all see the statistics rank 0 has."""
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    def sum_across_ranks(self, values: List[float]) -> List[float]:
        return sum_across_ranks(values, self.context, self.device)


def parameters_fingerprint(state_dict: Dict[str, torch.Tensor]) -> str:
    """A hash of a model's ``state_dict`` (parameters and buffers, in order): equal on two ranks
    only if their models are equal."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


class MaskSync(Hook):
    """Puts rank 0's masks in force on every rank after each update and checks that the ranks
    agree (masks, zeros in the pruned positions, and at the end the whole model)."""

    def __init__(self, pruner, context: DistContext, run_dir: Optional[Path]):
        self.pruner = pruner
        self.context = context
        self.path = Path(run_dir) / RECORD_FILE if run_dir is not None else None  # rank 0 only
        self.checks: List[Dict[str, Any]] = []

    def __call__(self, trainer, when: str) -> None:
        """Called by the pruning hook after it updated the masks (``when`` names the moment)."""
        store = self.pruner.store
        for name, mask in broadcast_masks(store.masks, self.context).items():
            store.update(name, mask, owned=True)  # AND with an equal mask: rank 0's mask
            store.zero_masked(name)
        self.check(trainer, when)

    def before_run(self, trainer) -> None:
        # After a resume every rank loaded the same checkpoint: check before the first step.
        if self.pruner.store.masks:
            self.check(trainer, f"resume at epoch {trainer.start_epoch}")

    def after_run(self, trainer) -> None:
        self.check(trainer, "end", whole_model=True)

    def check(self, trainer, when: str, whole_model: bool = False) -> None:
        params = {p.name: p.param for p in self.pruner.selected}
        # After thinning these are the masked model's tensors, kept as they were when it was thinned.
        mine = masks_fingerprint(self.pruner.store.masks, params)
        if whole_model:
            mine = {**mine, "parameters_sha256": parameters_fingerprint(trainer.model.state_dict())}
        ranks = gather_objects(mine, self.context)
        agree = all(r == ranks[0] for r in ranks) and all(r.get("nonzero_pruned", 0) == 0 for r in ranks)
        self.checks.append({"when": when, "epoch": trainer.epoch, "agree": agree, "ranks": ranks})
        self._write(trainer)
        if not agree:
            raise RanksDisagreeError(f"the ranks disagree {when}: {ranks}")

    def _write(self, trainer) -> None:
        if self.path is None:
            return
        record = {"world_size": self.context.world_size, "checks": self.checks}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, self.path)
