"""The pruner a training loop talks to: :class:`PruningEngine` (and :class:`NoOpPruner`).

Built by :func:`framework.pruning.build_pruner` (:mod:`.build`)::

    pruner = build_pruner(model, method="agp", structure="filter", criterion="l1",
                          initial_sparsity=0.0, final_sparsity=0.5,
                          starting_epoch=0, ending_epoch=10, frequency=1)
    for epoch in range(epochs):
        pruner.on_epoch_start(epoch)     # updates masks on scheduled epochs
        for x, y in loader:
            ...; optimizer.step()
            pruner.after_step()          # re-zeroes pruned weights (cheap)

Plain PyTorch: no Hydra, no MLflow. The engine owns the selected parameters, the schedule, the
mask rule of its method (:mod:`.rules`) and the mask store; coupled and global-scope engines
(:mod:`.coupled`, :mod:`.global_scope`) subclass it.

Ranking view: scores are computed on ``ranking_view(name, weight)`` (default: the weight itself).
``fold_batchnorm=True`` ranks on BatchNorm-folded weights (:class:`.scores.bn_fold.FoldedRanking`).
Masks always apply to the real weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from framework.errors import CheckpointError, PruningError
from framework.pruning.masks import MaskStore
from framework.pruning.protocol import Pruner
from framework.pruning.rules import MaskRule
from framework.pruning.schedules import EpochSchedule, TargetSchedule
from framework.pruning.scores.bn_fold import FoldPair
from framework.pruning.scores.calibration import BatchSource, Calibration
from framework.pruning.scores.data_criteria import DataCriterion
from framework.pruning.selection import SelectedParameter
from framework.pruning.spec import FINE, LAYER, NONE, RANKING_METHODS, THIN_NEVER, PrunerSpec

RankingView = Callable[[str, torch.Tensor], torch.Tensor]


def raw_weight(name: str, weight: torch.Tensor) -> torch.Tensor:
    """Default ranking view: rank on the weight as it is."""
    return weight


class NoOpPruner:
    """``method="none"``: satisfies the :class:`~.protocol.Pruner` protocol and prunes nothing."""

    method = NONE
    structure = FINE
    schedule: EpochSchedule | None = None
    step_frequency: int | None = None
    thin_when = THIN_NEVER
    nm: tuple[int, int] | None = None
    calibration: Calibration | None = None

    @property
    def fold_pairs(self) -> list[FoldPair]:
        return []

    @property
    def selected(self) -> list[SelectedParameter]:
        return []

    @property
    def parameter_names(self) -> list[str]:
        return []

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return {}

    def ranked_layers(self) -> dict[str, nn.Module]:
        return {}

    def set_calibration_data(self, batches: BatchSource, loss_fn: Callable[..., torch.Tensor] | None = None) -> None:
        pass

    def apply_masks(self) -> None:
        pass

    def on_epoch_start(self, epoch: int) -> float | None:
        return None

    def on_step(self, epoch: int, step: int, steps_per_epoch: int) -> float | None:
        return None

    def after_step(self) -> None:
        pass

    def layer_targets(self, epoch: int, fractional: float | None = None) -> dict[str, float] | None:
        return {}

    def target_sparsity(self, epoch: int, fractional: float | None = None) -> float | None:
        return 0.0  # nothing is ever pruned

    def sparsity(self) -> dict[str, float]:
        return {"total": 0.0}

    def cost_metrics(self, epoch: int) -> dict[str, float]:
        return {}

    def latency_correction(self) -> float:
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"method": NONE, "masks": {}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("masks"):
            raise CheckpointError(
                f"the checkpoint holds pruning masks for {len(state['masks'])} parameters but pruner.method=none"
            )

    def close(self) -> None:
        pass


class PruningEngine:
    """Owns the selected parameters, the schedule, the mask rule and the mask store; everything it
    needs comes into its constructor (:func:`~.build.build_pruner` builds the parts)."""

    coupling = LAYER  # each layer masked alone; see framework.pruning.coupled for "coupled"
    scope = LAYER  # a target per layer; see framework.pruning.global_scope for "global"

    def __init__(
        self,
        model: nn.Module,
        spec: PrunerSpec,
        selected: list[SelectedParameter],
        rule: MaskRule,
        schedule: EpochSchedule,
        finals: Mapping[str, float] | None,
        ranking_view: RankingView | None = None,
        fold_pairs: Iterable[FoldPair] = (),
    ):
        """``model``: what a data-aware criterion's calibration pass runs; ``spec``: the settings
        (method, structure, step frequency, thinning moment, N:M, calibration batches, gradient
        masking); ``finals``: each parameter's final sparsity (None for threshold methods);
        ``ranking_view``: what groups are ranked on (default: the weights; a data-aware criterion
        ranks its own view); ``fold_pairs``: the pairs a folded view folds."""
        self.spec = spec
        self.selected = list(selected)
        self.rule = rule
        self.schedule = schedule
        self.finals = dict(finals) if finals is not None else None  # None: threshold method, no target
        self.fold_pairs = list(fold_pairs)
        self.store = MaskStore(self.masked_parameters(), mask_gradients=spec.mask_gradients)
        self.calibration = self._calibration_for(model)
        view = ranking_view or raw_weight
        self.ranking_view: RankingView = self.calibration.view if self.calibration is not None else view

    def _calibration_for(self, model: nn.Module) -> Calibration | None:
        """The pass of a data-aware criterion (ranking methods only), bound to the ranked layers."""
        criterion = getattr(self.rule, "criterion", None)
        if self.spec.method not in RANKING_METHODS or not isinstance(criterion, DataCriterion):
            return None
        return Calibration(model, criterion, self.ranked_layers(), self.structure, self.spec.calibration_batches)

    # ----------------------------------------------------------------------------- the settings
    @property
    def method(self) -> str:
        return self.spec.method

    @property
    def structure(self) -> str:
        return self.spec.structure

    @property
    def step_frequency(self) -> int | None:
        """None: masks change only at epoch starts."""
        return self.spec.step_frequency

    @property
    def thin_when(self) -> str:
        """When a training run thins the model (the engine only says it; :mod:`.thinning` does it)."""
        return self.spec.thin_when

    @property
    def nm(self) -> tuple[int, int] | None:
        return self.spec.nm

    def masked_parameters(self) -> dict[str, nn.Parameter]:
        """Every parameter the store masks: the selected ones (coupled engines add biases, BN γ/β)."""
        return {p.name: p.param for p in self.selected}

    def ranked_layers(self) -> dict[str, nn.Module]:
        """``weight name -> layer`` of the layers whose groups the engine scores."""
        return {p.name: p.layer for p in self.selected}

    def units(self) -> dict[str, tuple[str, ...]]:
        """What gets one target: each unit's name -> the weights whose levels give it (here, each
        selected weight alone; coupled engines: each dependency group)."""
        return {p.name: (p.name,) for p in self.selected}

    def set_calibration_data(self, batches: BatchSource, loss_fn: Callable[..., torch.Tensor] | None = None) -> None:
        """Where a data-aware criterion reads its calibration batches ``(inputs, targets)``:
        a callable ``batches(moment)`` (see :func:`.scores.calibration.seeded_batches`) or an iterable,
        and the loss whose gradients it sees (default cross-entropy). No-op for weight criteria."""
        if self.calibration is not None:
            self.calibration.set_data(batches, loss_fn)

    def prepare_ranking(self, epoch: int, fractional: float | None = None) -> None:
        """Run the calibration pass a data-aware criterion needs, once per pruning moment."""
        if self.calibration is not None:
            self.calibration.run(float(epoch) if fractional is None else float(fractional))

    # ----------------------------------------------------------------------------- training hooks
    def on_step(self, epoch: int, step: int, steps_per_epoch: int) -> float | None:
        """Step-level AGP (``step_frequency``): after optimizer step ``step`` (1-based) of
        ``epoch``, re-rank every ``step_frequency`` steps to the cubic target at the fractional
        epoch ``epoch + step / steps_per_epoch``, between ``starting_epoch`` and the last scheduled
        epoch (where the epoch-level update reaches the final target). Returns the target or None.
        """
        if not self.step_frequency or step % self.step_frequency or step >= steps_per_epoch:
            return None
        fractional = epoch + step / steps_per_epoch
        schedule = self.schedule
        if not (schedule.starting_epoch <= fractional < schedule.last_epoch):
            return None
        self.update_masks(epoch, fractional=fractional)
        return self.target_sparsity(epoch, fractional=fractional)

    def on_epoch_start(self, epoch: int) -> float | None:
        """Update and apply masks if ``epoch`` is scheduled.

        Returns None when nothing was pruned; otherwise the target sparsity of this update
        (:meth:`target_sparsity`) or, for threshold methods that have no target, the total
        sparsity reached.
        """
        if not self.schedule.is_pruning_epoch(epoch):
            return None
        self.update_masks(epoch)
        target = self.target_sparsity(epoch)
        return self.sparsity()["total"] if target is None else target

    def after_step(self) -> None:
        """Re-zero pruned weights after an optimizer step."""
        self.store.apply()

    def apply_masks(self) -> None:
        """Zero the pruned weights now (e.g. after loading a checkpoint, before the first step)."""
        self.store.apply()

    @torch.no_grad()
    def update_masks(self, epoch: int, fractional: float | None = None) -> None:
        """Rank every selected parameter and AND the new masks into the store."""
        # No apply() before ranking: groups pruned earlier are ranked lowest whatever their
        # current values, so the result does not depend on whether the weights were re-masked.
        self.prepare_ranking(epoch, fractional)
        targets = self.layer_targets(epoch, fractional=fractional)
        for selected in self.selected:
            view = self.ranking_view(selected.name, selected.param)
            keep = self.rule.keep_mask(
                view,
                selected.layer,
                None if targets is None else targets[selected.name],
                self.store.get(selected.name),
            )
            # keep is a fresh tensor from the rule: the store may keep it without a copy.
            self.store.update(selected.name, keep, owned=True)
            # Zero with the bool mask now; the float masks of apply() are built lazily on the
            # next after_step, so an update does not pay for them.
            self.store.zero_masked(selected.name)

    # ----------------------------------------------------------------------------- reading
    @property
    def parameter_names(self) -> list[str]:
        """Names of the pruned parameters, in ``named_parameters`` order."""
        return [p.name for p in self.selected]

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """``{name: bool keep-mask}`` of the parameters pruned so far."""
        return self.store.masks

    def layer_targets(self, epoch: int, fractional: float | None = None) -> dict[str, float] | None:
        """Per-parameter target at ``epoch`` (None for threshold methods); with ``fractional``,
        the step-level AGP target at that fractional epoch."""
        schedule = self.schedule
        if self.finals is None or not isinstance(schedule, TargetSchedule):
            return None
        if fractional is not None:
            return {name: schedule.target_at(fractional, final) for name, final in self.finals.items()}
        return {name: schedule.target(epoch, final) for name, final in self.finals.items()}

    def target_sparsity(self, epoch: int, fractional: float | None = None) -> float | None:
        """Schedule target at ``epoch`` over the whole pruned set: the per-layer targets weighted
        by parameter size (equal to the schedule value when no ``levels`` are given)."""
        targets = self.layer_targets(epoch, fractional=fractional)
        if targets is None:
            return None
        sizes = {p.name: p.param.numel() for p in self.selected}
        return sum(targets[name] * sizes[name] for name in targets) / sum(sizes.values())

    def scheduled_targets(self, epoch: int, fractional: float | None = None) -> dict[str, float]:
        """:meth:`layer_targets` of a ranking method, which always has them (coupled and global
        engines rank only for agp/level)."""
        targets = self.layer_targets(epoch, fractional=fractional)
        if targets is None:
            raise PruningError(f"pruner.method={self.method} has no sparsity target to rank to; allowed: agp | level")
        return targets

    def scheduled_sparsity(self, epoch: int, fractional: float | None = None) -> float:
        """:meth:`target_sparsity` of a ranking method (see :meth:`scheduled_targets`)."""
        target = self.target_sparsity(epoch, fractional=fractional)
        if target is None:
            raise PruningError(f"pruner.method={self.method} has no sparsity target to rank to; allowed: agp | level")
        return target

    def cost_metrics(self, epoch: int) -> dict[str, float]:
        """A budget's predicted cost and target (:class:`~.budget.engine.BudgetPruningEngine`); none here."""
        return {}

    def latency_correction(self) -> float:
        """No latency allocation measured here (:class:`~.budget.engine.BudgetPruningEngine` has them)."""
        return 1.0

    @torch.no_grad()
    def sparsity(self) -> dict[str, float]:
        """``{"total": zeros / elements over the pruned set, name: zeros / elements}``."""
        result: dict[str, float] = {}
        zeros_total = elements_total = 0
        for selected in self.selected:
            elements = selected.param.numel()
            zeros = elements - int(torch.count_nonzero(selected.param))
            result[selected.name] = zeros / elements if elements else 0.0
            zeros_total += zeros
            elements_total += elements
        return {"total": zeros_total / elements_total if elements_total else 0.0, **result}

    # ----------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Plain data (strings, bool/uint8 tensors): loadable with ``torch.load(weights_only=True)``."""
        return {
            "method": self.method,
            "structure": self.structure,
            "masks": self.store.state_dict(),
            "rule": self.rule.state_dict(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore masks (and zero the masked weights) from :meth:`state_dict`."""
        # config key each state field comes from
        for key, current in (("method", self.method), ("structure", self.structure)):
            saved = state.get(key)
            if saved is not None and saved != current:
                raise CheckpointError(
                    f"the checkpoint was pruned with pruner.{key}={saved}; this run uses pruner.{key}={current}"
                )
        saved_coupling = state.get("coupling", "layer")  # checkpoints before coupling were per layer
        if saved_coupling != self.coupling:
            raise CheckpointError(
                f"the checkpoint was pruned with pruner.coupling={saved_coupling}; "
                f"this run uses pruner.coupling={self.coupling}"
            )
        self.store.load_state_dict(state.get("masks", {}))
        # checkpoints written before the mask rules had their name keep the rule's state under "pruner"
        self.rule.load_state_dict(state.get("rule", state.get("pruner", {})))

    def close(self) -> None:
        """Remove gradient hooks."""
        self.store.remove_hooks()


# Both satisfy the protocol every consumer reads: mypy checks it here (and tests at run time).
PRUNER_CLASSES: tuple[type[Pruner], ...] = (NoOpPruner, PruningEngine)
