"""Keeps the pruning masks identical on every rank and proves it.

:class:`MaskSync` hears of every mask update (the pruning hook's ``trainer.weights_edited``):
rank 0's masks are broadcast and put in force on every rank, then every rank's fingerprint (a hash
of the masks, and the count of pruned positions that hold a nonzero weight) is gathered and
compared; any difference stops the run. Rank 0 writes the fingerprints to
``<run dir>/distributed.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from framework.errors import SecateursError
from framework.process.distributed import DistContext, broadcast_object, gather_objects
from framework.training.hooks import Hook


class RanksDisagreeError(SecateursError):
    """The ranks' masks or weights differ: the run cannot go on as one model."""


def broadcast_masks(masks: dict[str, torch.Tensor], context: DistContext) -> dict[str, torch.Tensor]:
    """Rank 0's keep-masks, sent to every rank (on the CPU, as uint8, in name order)."""
    if not context.enabled:
        return masks
    names = broadcast_object(sorted(masks), context)
    shapes = broadcast_object({n: tuple(masks[n].shape) for n in names} if context.is_main else None, context)
    out = {}
    for name in names:
        buffer = (
            masks[name].detach().to("cpu", dtype=torch.uint8).contiguous()
            if context.is_main
            else torch.empty(shapes[name], dtype=torch.uint8)
        )
        dist.broadcast(buffer, src=0)
        out[name] = buffer.to(torch.bool)
    return out


def masks_fingerprint(masks: dict[str, torch.Tensor], params: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What :class:`MaskSync` compares between ranks: a hash of every mask's bits, and how many
    pruned positions hold a nonzero weight (0 when the masks are in force)."""
    digest = hashlib.sha256()
    nonzero_pruned = 0
    for name in sorted(masks):
        mask = masks[name].detach().to("cpu", dtype=torch.bool).contiguous()
        digest.update(name.encode())
        digest.update(mask.numpy().tobytes())
        if name in params:
            weight = params[name].detach().to("cpu")
            nonzero_pruned += int(torch.count_nonzero(weight[~mask]))
    return {"sha256": digest.hexdigest(), "nonzero_pruned": nonzero_pruned, "layers": len(masks)}


def parameters_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
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

    def __init__(self, pruner, context: DistContext, record: Path | None):
        """``record``: where rank 0 writes the checks (None on the other ranks)."""
        self.pruner = pruner
        self.context = context
        self.path = record
        self.checks: list[dict[str, Any]] = []

    def after_weights_edited(self, trainer, when: str) -> None:
        """The pruning hook updated the masks (``when`` names the moment)."""
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
