"""A penalty added to the training loss each step: the loop's side of sparsity training.

:class:`LossTermHook` takes any ``term(model) -> scalar tensor`` with ``active(epoch)`` (for
example a :class:`framework.pruning.regularizers.Regularizer`: the loop does not know what the
term means) and adds it to the loss while active. The mean value over the epoch's steps is logged
as ``<metric>`` (``regularizer/value`` by default; 0 in epochs where the term is off).

A term that knows its own gradient (``value(model)`` and ``add_gradient(model)``, like
:class:`~framework.pruning.regularizers.GroupLasso`) skips autograd: its value is computed without a
graph, and its gradient is added to ``.grad`` in place after backward (after DDP has averaged the
ranks' gradients; the term's gradient is the same on every rank). Same update, less memory traffic.

The term is a deterministic function of the model, so a resumed run computes the same values:
nothing needs saving.
"""

from __future__ import annotations

import torch

from framework.training.hooks import Hook


class LossTermHook(Hook):
    def __init__(self, term, metric: str = "regularizer/value"):
        self.term = term
        self.metric = metric
        self._sum: torch.Tensor | None = None
        self._steps = 0
        self._gradient_pending = False  # the term adds its own gradient after this step's backward

    def before_epoch(self, trainer) -> None:
        self._sum, self._steps = None, 0

    def training_loss(self, trainer, loss, inputs, targets, logits):
        self._gradient_pending = False
        if not self.term.active(trainer.epoch):
            return loss
        if hasattr(self.term, "add_gradient"):
            value = self.term.value(trainer.model)
            self._gradient_pending = True
        else:
            value = self.term(trainer.model)
        detached = value.detach()
        # summed as a tensor: reading it as a float each step would wait for the device
        self._sum = detached if self._sum is None else self._sum + detached
        self._steps += 1
        return loss + value

    def after_backward(self, trainer) -> None:
        if self._gradient_pending:
            self.term.add_gradient(trainer.model)
            self._gradient_pending = False

    def after_epoch(self, trainer) -> None:
        # a function of the (synchronised) weights: the same on every rank, nothing to reduce
        trainer.epoch_metrics[self.metric] = float(self._sum) / self._steps if self._sum is not None else 0.0
