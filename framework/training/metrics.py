"""Classification metrics accumulated over an epoch: one class per sample (``logits [B, C]``,
``targets [B]``) or one per position of a sequence (a language model's next token: ``logits
[B, T, V]``, ``targets [B, T]``), where every position counts as a sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def correct_topk(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> dict[int, int]:
    """How many samples have their target among the k highest logits, for each k."""
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    max_k = min(max(ks), logits.shape[1])
    top = logits.topk(max_k, dim=1).indices
    hits = top.eq(targets.unsqueeze(1))
    return {k: int(hits[:, : min(k, max_k)].any(dim=1).sum()) for k in ks}


def lower_is_better(metric: str) -> bool:
    """Whether a metric is minimised (best.pt, early stopping): a loss or a perplexity; any other
    (top-1, sparsity) is maximised."""
    return metric.endswith(("loss", "perplexity"))


class EpochAverages:
    """Running sums of loss and top-k hits; ``result()`` gives the epoch's means."""

    def __init__(self, ks: Sequence[int] = (1, 5)):
        self.ks = tuple(ks)
        self.loss_sum = 0.0
        self.count = 0
        self.hits = {k: 0 for k in self.ks}

    def update(self, loss: float | torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """``loss``: the batch's mean loss (a float, or a 0-d tensor) over its ``targets.numel()`` samples."""
        batch = targets.numel()
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
