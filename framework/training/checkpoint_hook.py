"""Saves ``checkpoints/last.pt`` after every epoch (and once before the first, so that even a run
stopped in its first epoch leaves a checkpoint to resume from).

At the start of a run it removes the temporary files that a kill in the middle of a save left in
the checkpoint folder; a save that fails keeps the previous checkpoint (see ``save_atomic``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from framework.training.checkpoint import remove_partial_files, save_atomic
from framework.training.hooks import Hook

log = logging.getLogger(__name__)


class CheckpointHook(Hook):
    def __init__(self, directory: str | Path, filename: str = "last.pt"):
        self.path = Path(directory) / filename

    def before_run(self, trainer) -> None:
        removed = remove_partial_files(self.path)
        if removed:
            log.info("removed %d partial checkpoint file(s) left by an interrupted save in %s",
                     len(removed), self.path.parent)
        if trainer.finished_epochs == 0:
            save_atomic(trainer.state_dict(), self.path)

    def after_epoch(self, trainer) -> None:
        save_atomic(trainer.state_dict(), self.path)
