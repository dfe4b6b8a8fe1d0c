"""Saves ``checkpoints/last.pt`` after every epoch (and once before the first, so that even a run
stopped in its first epoch leaves a checkpoint to resume from), and ``checkpoints/best.pt`` after
an epoch whose ``best_metric`` beats every earlier epoch's (resume always takes ``last.pt``).

At the start of a run it removes the temporary files that a kill in the middle of a save left in
the checkpoint folder; a save that fails keeps the previous checkpoint (see ``save_atomic``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from framework.run_context import BEST_CHECKPOINT, LAST_CHECKPOINT
from framework.training.checkpoint import remove_partial_files, save_atomic
from framework.training.hooks import Hook
from framework.training.metrics import lower_is_better

log = logging.getLogger(__name__)


class CheckpointHook(Hook):
    def __init__(
        self,
        directory: str | Path,
        filename: str = LAST_CHECKPOINT,
        best_metric: str | None = None,
        best_from_epoch: int = 0,
    ):
        self.path = Path(directory) / filename
        self.best_path = Path(directory) / BEST_CHECKPOINT
        # The best epoch is looked for among epochs >= best_from_epoch (for a pruned run: once the
        # final sparsity is reached, so that best.pt is not a dense epoch from before pruning).
        # A loss or a perplexity is minimised, any other metric maximised. Stateless: the trainer's
        # history (restored on resume) holds every earlier epoch's value.
        self.best_metric = best_metric
        self.best_from_epoch = best_from_epoch

    def before_run(self, trainer) -> None:
        removed = remove_partial_files(self.path)
        if removed:
            log.info(
                "removed %d partial checkpoint file(s) left by an interrupted save in %s",
                len(removed),
                self.path.parent,
            )
        if trainer.finished_epochs == 0:
            save_atomic(trainer.state_dict(), self.path)

    def after_epoch(self, trainer) -> None:
        state = trainer.state_dict()
        save_atomic(state, self.path)
        if self.best_metric is not None and self.is_best(trainer.history, trainer.epoch):
            save_atomic(state, self.best_path)

    def is_best(self, history: Sequence[dict[str, float]], epoch: int) -> bool:
        """Whether ``epoch``'s value beats every eligible earlier epoch's (the first of equals wins)."""
        metric = self.best_metric
        if metric is None or epoch < self.best_from_epoch or epoch >= len(history):
            return False
        value = history[epoch].get(metric)
        if value is None or not math.isfinite(value):
            return False
        sign = -1.0 if lower_is_better(metric) else 1.0
        earlier = [m.get(metric) for m in history[self.best_from_epoch : epoch]]
        return all(sign * value > sign * e for e in earlier if e is not None and math.isfinite(e))
