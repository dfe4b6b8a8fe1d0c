"""The :class:`Pruner` protocol: what a training loop, a hook or an analysis may ask of a pruner.

Every engine (:class:`~.engine.PruningEngine` and its coupled and global-scope subclasses) and the
:class:`~.engine.NoOpPruner` of ``method="none"`` satisfy it; :func:`~.build.build_pruner` returns one
of them. A consumer reads these members directly: each exists on every pruner, with ``None`` (or an
empty collection) where it does not apply, so nobody has to probe for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:  # the protocol names the engine's parts; importing them here would import the engine
    from framework.pruning.schedules import EpochSchedule
    from framework.pruning.scores.bn_fold import FoldPair
    from framework.pruning.scores.calibration import BatchSource, Calibration
    from framework.pruning.selection import SelectedParameter


@runtime_checkable
class Pruner(Protocol):
    """A pruner as its consumers see it (see the module docstring)."""

    @property
    def method(self) -> str:
        """``none``, ``level``, ``agp``, ``magnitude`` or ``std_threshold``."""

    @property
    def structure(self) -> str:
        """``fine``, ``filter``, ``channel``, ``head`` or ``nm``."""

    @property
    def schedule(self) -> EpochSchedule | None:
        """Which epochs prune (None: nothing is ever pruned)."""

    @property
    def step_frequency(self) -> int | None:
        """AGP re-ranks every that many optimizer steps too (None: at epoch starts only)."""

    @property
    def thin_when(self) -> str:
        """When a training run makes the masked model smaller: ``end``, ``after_pruning`` or ``never``."""

    @property
    def nm(self) -> tuple[int, int] | None:
        """``(n, m)`` of an N:M pattern, the pattern a run checks at its end (None otherwise)."""

    @property
    def calibration(self) -> Calibration | None:
        """The pass that feeds a data-aware criterion (None for weight criteria)."""

    @property
    def fold_pairs(self) -> list[FoldPair]:
        """The (weight, BatchNorm) pairs ranked folded (``fold_batchnorm``; [] otherwise)."""

    @property
    def selected(self) -> list[SelectedParameter]:
        """The pruned parameters with their layers, in ``named_parameters`` order."""

    @property
    def parameter_names(self) -> list[str]:
        """Names of the pruned parameters, in ``named_parameters`` order."""

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """``{name: bool keep-mask}`` of the parameters pruned so far."""

    def ranked_layers(self) -> dict[str, nn.Module]:
        """``weight name -> layer`` of the layers whose groups are scored."""

    def set_calibration_data(self, batches: BatchSource, loss_fn: Callable[..., torch.Tensor] | None = None) -> None:
        """Where a data-aware criterion reads its calibration batches (a no-op for weight criteria)."""

    def apply_masks(self) -> None:
        """Zero the pruned weights now (after loading a checkpoint, before the first step)."""

    def on_epoch_start(self, epoch: int) -> float | None:
        """Prune if ``epoch`` is scheduled; the target reached then, or None."""

    def on_step(self, epoch: int, step: int, steps_per_epoch: int) -> float | None:
        """Step-level AGP after optimizer step ``step`` of ``epoch``; the target or None."""

    def after_step(self) -> None:
        """Re-zero pruned weights after an optimizer step."""

    def layer_targets(self, epoch: int, fractional: float | None = None) -> dict[str, float] | None:
        """Per-parameter target at ``epoch`` (None for threshold methods)."""

    def target_sparsity(self, epoch: int, fractional: float | None = None) -> float | None:
        """The schedule's target at ``epoch`` over the whole pruned set (None: no target)."""

    def sparsity(self) -> dict[str, float]:
        """``{"total": ..., name: ...}``: zeros over elements of the pruned set and of each parameter."""

    def cost_metrics(self, epoch: int) -> dict[str, float]:
        """A budget's predicted cost and its target at ``epoch``, by metric name ({} without a budget)."""

    def latency_correction(self) -> float:
        """The factor a latency allocation checked by measuring applied to the latency table's
        prediction of the current widths (:mod:`.budget.remeasure`); 1.0 when none was."""

    def state_dict(self) -> dict[str, Any]:
        """Plain data (strings, bool/uint8 tensors) for a ``weights_only`` checkpoint."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; a mismatch with this pruner is one line."""

    def close(self) -> None:
        """Remove gradient hooks."""
