"""A language model's perplexity beside its loss: ``exp`` of the mean next-token cross-entropy
(``train/loss``, ``val/loss``), the figure language-model papers report, lower is better."""

from __future__ import annotations

import math

from framework.training.hooks import Hook


class PerplexityHook(Hook):
    SHOWN_IN_LOG = ("val/perplexity",)

    def after_epoch(self, trainer) -> None:
        metrics = trainer.epoch_metrics
        for split in ("train", "val"):
            loss = metrics.get(f"{split}/loss")
            if loss is not None:
                metrics[f"{split}/perplexity"] = math.exp(min(loss, 700.0)) if math.isfinite(loss) else math.inf
