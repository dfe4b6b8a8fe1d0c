"""Saves ``checkpoints/last.pt`` after every epoch (and once before the first, so that even a run
stopped in its first epoch leaves a checkpoint to resume from)."""

from __future__ import annotations

from pathlib import Path

from framework.training.checkpoint import save_atomic
from framework.training.hooks import Hook


class CheckpointHook(Hook):
    def __init__(self, directory: str | Path, filename: str = "last.pt"):
        self.path = Path(directory) / filename

    def before_run(self, trainer) -> None:
        if trainer.finished_epochs == 0:
            save_atomic(trainer.state_dict(), self.path)

    def after_epoch(self, trainer) -> None:
        save_atomic(trainer.state_dict(), self.path)
