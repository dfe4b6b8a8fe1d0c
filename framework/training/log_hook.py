"""One log line per epoch, so a run in a terminal or a job log shows its progress."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from framework.training.hooks import Hook

log = logging.getLogger("framework.training")

# Shown in this order when present; the rest stays in the trackers and metrics.jsonl.
SHOWN = ("train/loss", "train/top1", "val/loss", "val/top1", "val/top5", "lr")


class EpochLogHook(Hook):
    def __init__(self, also_shown: Sequence[str] = ()):
        self.shown = (*SHOWN, *also_shown)  # metrics that other hooks add (the runner names them)

    def after_epoch(self, trainer) -> None:
        metrics = trainer.epoch_metrics
        parts = [f"{key}={metrics[key]:.4g}" for key in self.shown if key in metrics]
        log.info("epoch %d/%d %s", trainer.epoch + 1, trainer.epochs, " ".join(parts))
