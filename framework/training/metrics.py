"""Classification metrics accumulated over an epoch."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def correct_topk(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> dict[int, int]:
    """How many samples have their target among the k highest logits, for each k."""
    max_k = min(max(ks), logits.shape[1])
    top = logits.topk(max_k, dim=1).indices
    hits = top.eq(targets.unsqueeze(1))
    return {k: int(hits[:, : min(k, max_k)].any(dim=1).sum()) for k in ks}


class EpochAverages:
    """Running sums of loss and top-k hits; ``result()`` gives the epoch's means."""

    def __init__(self, ks: Sequence[int] = (1, 5)):
        self.ks = tuple(ks)
        self.loss_sum = 0.0
        self.count = 0
        self.hits = {k: 0 for k in self.ks}

    def update(self, loss: float | torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """``loss``: the batch's mean loss (a float, or a 0-d tensor)."""
        batch = targets.shape[0]
        self.loss_sum += float(loss) * batch
        self.count += batch
        for k, n in correct_topk(logits.detach(), targets, self.ks).items():
            self.hits[k] += n

    def reduce(self, sum_across_ranks) -> None:
        """Replace the sums with ``sum_across_ranks(sums)`` (each rank's sums added up), so that
        ``result()`` covers every rank's samples (see :mod:`framework.process.distributed`)."""
        totals = sum_across_ranks([self.loss_sum, self.count, *(self.hits[k] for k in self.ks)])
        self.loss_sum, self.count = float(totals[0]), int(round(totals[1]))
        self.hits = {k: int(round(v)) for k, v in zip(self.ks, totals[2:])}

    def result(self) -> dict[str, float]:
        n = max(self.count, 1)
        out = {"loss": self.loss_sum / n}
        out.update({f"top{k}": self.hits[k] / n for k in self.ks})
        return out
