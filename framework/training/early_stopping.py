"""Early stopping: end a run once its metric has stopped improving (``early_stopping.patience``).

The metric is the run's ``optimized_metric`` (the first of several), in the same direction as
best.pt: a loss or a perplexity is minimised, any other metric maximised. Epochs are counted from
``count_from``: for a pruned run the epoch that ends at the final sparsity (best.pt's first
eligible epoch), so a run never stops at a sparsity below its target. After ``patience`` counted
epochs without an improvement larger than ``min_delta`` over the best counted value, the hook asks
the trainer to stop (:meth:`Trainer.request_stop`): that epoch becomes the last one, so thinning,
the deploy step, the checkpoint and tracking all finish it as they finish a planned last epoch,
and the run ends FINISHED. The counter and the best value are this hook's state (in last.pt).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from framework.training.hooks import Hook
from framework.training.metrics import lower_is_better

log = logging.getLogger(__name__)


class EarlyStoppingHook(Hook):
    name = "early_stopping"

    def __init__(self, metric: str, patience: int, min_delta: float = 0.0, count_from: int = 0):
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.count_from = count_from
        self.sign = -1.0 if lower_is_better(metric) else 1.0
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0
        self.stopped: str | None = None  # the line said when the run stopped (kept for a resume)
        self._missing_said = False

    def before_run(self, trainer) -> None:
        if self.stopped is not None:  # resumed after it stopped: nothing is left to train
            log.info("%s; nothing left to train", self.stopped)
            trainer.request_stop(self.stopped)

    def after_epoch(self, trainer) -> None:
        epoch = trainer.epoch
        if epoch < self.count_from:
            return
        value = trainer.epoch_metrics.get(self.metric)
        if value is None:
            if not self._missing_said:
                log.warning(
                    "early_stopping: optimized_metric=%s is not among this run's epoch metrics; no early stop",
                    self.metric,
                )
                self._missing_said = True
            return
        if math.isfinite(value) and (self.best is None or self.sign * (value - self.best) > self.min_delta):
            self.best, self.best_epoch = float(value), epoch
            self.epochs_without_improvement = 0
            return
        self.epochs_without_improvement += 1
        if self.epochs_without_improvement < self.patience:
            return
        self.stopped = self._reason(trainer)
        log.info("%s", self.stopped)
        trainer.request_stop(self.stopped)

    def _reason(self, trainer) -> str:
        best = "no finite value"
        if self.best is not None and self.best_epoch is not None:
            best = f"best {self.best:.4g} at epoch {self.best_epoch + 1}"
        counted = f", counted from epoch {self.count_from + 1} (the final sparsity)" if self.count_from else ""
        delta = f" by more than {self.min_delta:g}" if self.min_delta else ""
        return (
            f"early stopping after epoch {trainer.epoch + 1}/{trainer.epochs}: {self.metric} has not improved{delta} "
            f"for {self.patience} epoch(s) ({best}{counted}; early_stopping.patience={self.patience})"
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        self.epochs_without_improvement = int(state.get("epochs_without_improvement", 0))
        self.stopped = state.get("stopped")
