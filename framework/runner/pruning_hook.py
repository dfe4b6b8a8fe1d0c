"""Plugs a pruner into the training loop: masks are updated at the start of each scheduled epoch,
re-applied after every optimizer step, reported after every epoch and saved with the checkpoint.
Each update is announced on the trainer (``trainer.weights_edited``: with several processes the
mask synchronisation hears of it). When another hook replaces the model with a thinned one, the
masks are spent: the sparsity reached is kept and the reports are written for the masked model.
At the end the per-layer reports are written to ``<run dir>/pruning/``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from framework.pruning.scores.bn_fold import batchnorms_at_initial_state
from framework.training.hooks import Hook

log = logging.getLogger(__name__)


class PruningHook(Hook):
    name = "pruning"
    # of the metrics this hook adds, the ones the epoch's log line shows (per-layer sparsity is not)
    SHOWN_IN_LOG = ("pruning/target_sparsity", "sparsity/total")

    def __init__(
        self,
        pruner,
        report_dir: str | Path | None = None,
        input_shape: Sequence[int] | None = None,
        fold_pairs: list[dict[str, Any]] | None = None,
        method_may_change: bool = False,
    ):
        """``report_dir``: None on ranks > 0 (rank 0 writes the reports). ``method_may_change``: a
        resume with resume_changed=allow, where the masks apply whatever the method saved with them."""
        self.pruner = pruner
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.fold_pairs = fold_pairs
        self.method_may_change = method_may_change
        self.step_level = bool(pruner.step_frequency)
        # After thinning the masks are spent: set by freeze()
        self.frozen_sparsity: dict[str, float] | None = None
        self.warned_unfolded = False  # fold_batchnorm ranked on untrained BatchNorms: said once

    def after_model_replaced(self, trainer, previous) -> None:
        self.freeze(previous)

    def freeze(self, masked_model=None) -> None:
        """Stop masking (the model was thinned); keep reporting the sparsity reached, and write the
        end-of-run reports for ``masked_model``."""
        if self.frozen_sparsity is None:
            self.frozen_sparsity = {k: float(v) for k, v in self.pruner.sparsity().items()}
        if masked_model is not None and self.report_dir is not None:
            self.write_reports(masked_model)  # now: the masks will not fit the model again

    def before_run(self, trainer) -> None:
        # After a resume the loaded masks must hold before the first step.
        if self.frozen_sparsity is None:
            self.pruner.apply_masks()

    def before_epoch(self, trainer) -> None:
        if self.frozen_sparsity is None:
            # Only a step that removes weights can rank through untrained BatchNorms (AGP's first
            # step removes none): count before and after while the warning is still unsaid.
            watching = not self.warned_unfolded and bool(self.pruner.fold_pairs)
            removed_before = self.removed_weights() if watching else 0
            updated = self.pruner.on_epoch_start(trainer.epoch)
            if updated is not None and watching and self.removed_weights() > removed_before:
                self.warn_if_folding_changes_nothing(trainer)
                trainer.weights_edited(f"epoch {trainer.epoch} start")

    def removed_weights(self) -> int:
        """How many weights the masks remove now."""
        return sum(int((mask == 0).sum()) for mask in self.pruner.masks.values())

    def warn_if_folding_changes_nothing(self, trainer) -> None:
        """fold_batchnorm=true ranks W·γ/sqrt(var+eps); while every folded BatchNorm is untrained
        that factor is one constant, so the ranking (and the whole run) equals fold_batchnorm=false."""
        pairs = self.pruner.fold_pairs
        if self.warned_unfolded or not pairs or not batchnorms_at_initial_state(trainer.model, pairs):
            return
        self.warned_unfolded = True
        log.warning(
            "fold_batchnorm: every folded BatchNorm is still at its initial state (gamma 1, beta 0, "
            "running mean 0, var 1) when pruning at epoch %d, so the folded ranking equals the raw one; "
            "prune later (schedule.starting_epoch=1 or more) or start from trained weights (pretrained=...)",
            trainer.epoch,
        )

    def after_step(self, trainer) -> None:
        if self.frozen_sparsity is not None:
            return
        self.pruner.after_step()
        if self.step_level:  # step-level AGP re-ranks here (schedule.step_frequency)
            updated = self.pruner.on_step(trainer.epoch, trainer.step_in_epoch, trainer.steps_per_epoch)
            if updated is not None:
                trainer.weights_edited(f"epoch {trainer.epoch} step {trainer.step_in_epoch}")

    def after_epoch(self, trainer) -> None:
        metrics = trainer.epoch_metrics
        target = self.pruner.target_sparsity(trainer.epoch)
        if target is not None:  # threshold methods (magnitude, std_threshold) have no target
            metrics["pruning/target_sparsity"] = float(target)
        sparsity = self.frozen_sparsity if self.frozen_sparsity is not None else self.pruner.sparsity()
        for name, value in sparsity.items():
            metrics[f"sparsity/{name}"] = float(value)
        metrics.update(self.pruner.cost_metrics(trainer.epoch))

    def after_run(self, trainer) -> None:
        if self.report_dir is not None and self.frozen_sparsity is None:  # else written by freeze()
            self.write_reports(trainer.model)

    def write_reports(self, model) -> list[Path]:
        """Sparsity table (CSV, Markdown), bar chart, MACs and BN-fold pairs under ``report_dir``."""
        from framework.analysis import write_pruning_reports

        assert self.report_dir is not None
        paths = write_pruning_reports(
            model,
            self.pruner.parameter_names,
            self.report_dir,
            input_shape=(1, *self.input_shape) if self.input_shape else None,
        )
        if self.fold_pairs is not None:
            path = self.report_dir / "bn_fold_pairs.json"
            path.write_text(json.dumps(self.fold_pairs, indent=2) + "\n")
            paths.append(path)
        return paths

    def state_dict(self) -> dict[str, Any]:
        if self.frozen_sparsity is not None:  # thinned: the masks no longer fit the model
            return {"frozen_sparsity": dict(self.frozen_sparsity)}
        return self.pruner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "frozen_sparsity" in state:  # thinned: the masks are spent
            self.frozen_sparsity = dict(state["frozen_sparsity"])
            return
        if self.method_may_change:  # the masks apply, whatever method and structure made them
            state = {key: value for key, value in state.items() if key not in ("method", "structure")}
        self.pruner.load_state_dict(state)
