"""A model's loss and top-1/top-5 on a split: the loop's evaluation, also for a model that is not
the one being trained (a distillation teacher, a run's checkpoint under ``task=eval``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from framework.training.metrics import EpochAverages

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SumAcrossRanks = Callable[[Sequence[float]], list[float]]


def classification_loss() -> LossFunction:
    """The loss the loop minimises and reports unless it is given another: cross-entropy."""
    return nn.CrossEntropyLoss()


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    loss_fn: LossFunction,
    sum_across_ranks: SumAcrossRanks | None = None,
) -> dict[str, float]:
    """``loss``, ``top1``, ``top5`` of ``model`` (put in eval mode) over ``loader``; with several
    processes each rank sees its shard and ``sum_across_ranks`` makes the figures the whole split's."""
    model.eval()
    averages = EpochAverages()
    for inputs, targets in loader:
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        logits = model(inputs)
        averages.update(loss_fn(logits, targets), logits, targets)
    if sum_across_ranks is not None:
        averages.reduce(sum_across_ranks)
    return averages.result()
