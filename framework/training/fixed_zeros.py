"""Zeros that stay zero: the weights a one-shot pruning left at zero (Wanda, SparseGPT, N:M) are
held there while the model is fine-tuned, so the sparsity it was given never regrows.

The masks are read from the weights the run starts from (an exact zero of a trained matrix is a
pruned weight) and put back after every optimizer step: a gradient, momentum or weight decay may
move a pruned weight for one step, and the next evaluation, checkpoint and saved model never see it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from framework.training.hooks import Hook


def zero_masks(parameters: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``name -> keep`` (``weight != 0``) for each of ``parameters`` that holds a zero."""
    return {name: weight.ne(0) for name, weight in parameters.items() if not bool(weight.ne(0).all())}


class FixedZerosHook(Hook):
    """Re-applies ``masks`` (by parameter name of the trained model) after every step."""

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        self.masks = dict(masks)
        self._pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def before_run(self, trainer) -> None:
        parameters = dict(trainer.model.named_parameters())
        self._pairs = [(parameters[name], mask.to(parameters[name].device)) for name, mask in self.masks.items()]
        self._apply()

    def after_step(self, trainer) -> None:
        self._apply()

    @torch.no_grad()
    def _apply(self) -> None:
        for weight, keep in self._pairs:
            weight.mul_(keep)
