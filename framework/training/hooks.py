"""Hooks: the way pruning, tracking and checkpointing plug into the training loop.

A hook overrides any of the methods below; the trainer calls them in list order. Each hook keeps
its own state and exposes it through ``state_dict``/``load_state_dict``, which the checkpoint
stores under the hook's ``name`` so that a resumed run continues every part where it stopped.
Hooks never hold one another; what one has to tell the others goes through the trainer
(``after_weights_edited``, ``after_model_replaced``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from framework.training.loop import Trainer


class Hook:
    """Base class; every method is a no-op."""

    #: key of this hook's state in the checkpoint; hooks without state may leave it empty
    name: str = ""

    def before_run(self, trainer: Trainer) -> None:
        """Once, before the first epoch (also after a resume)."""

    def before_epoch(self, trainer: Trainer) -> None:
        """At the start of every epoch, before the first step."""

    def training_loss(self, trainer: Trainer, loss, inputs, targets, logits):
        """Each step, before backward: return the loss to minimise (``loss``: the task loss plus
        what earlier hooks made of it). Overriding this puts the hook in the hot loop."""
        return loss

    def after_backward(self, trainer: Trainer) -> None:
        """Each step, after backward and before the optimizer step: gradients (already averaged
        over the ranks) may be changed in place. Overriding this puts the hook in the hot loop."""

    def after_step(self, trainer: Trainer) -> None:
        """After every optimizer step."""

    def after_epoch(self, trainer: Trainer) -> None:
        """After evaluation; ``trainer.epoch_metrics`` holds this epoch's metrics."""

    def after_run(self, trainer: Trainer) -> None:
        """Once, when every epoch has finished."""

    def after_weights_edited(self, trainer: Trainer, when: str) -> None:
        """Another hook changed the weights between optimizer steps (``trainer.weights_edited``:
        new pruning masks); ``when`` names the moment (``"epoch 3 start"``)."""

    def after_model_replaced(self, trainer: Trainer, previous: nn.Module) -> None:
        """Another hook replaced ``previous`` with ``trainer.model`` (``trainer.replace_model``: a
        smaller model); what it says of the change is ``trainer.replacement``."""

    def on_failure(self, trainer: Trainer, error: BaseException) -> None:
        """When training stops on an exception (NaN loss, Ctrl-C, SIGTERM, a bug)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
