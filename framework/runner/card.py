"""A job of a report-card sweep (``card.enabled``), around the ordinary training run:

* before the run: the dense model of its seed (trained once per sweep by the first job that
  needs it, :mod:`framework.sweeps.card_dense`) becomes ``pretrained``, and ``card.ratio``
  becomes ``pruner.final_sparsity`` (:func:`framework.analysis.compression.sparsity_for_ratio`);
* during it: the test split is evaluated each epoch (``test/top1``, ``test/loss``);
* at its last epoch: the card's figures (:func:`framework.sweeps.card.selected_accuracy`): top-1
  on the test split at the last epoch and at the epoch the validation split selects.

The dense model's own run is a card run too (pruner.method=none): the card's reference row.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from framework.sweeps.card import selected_accuracy
from framework.sweeps.card_dense import DENSE_FILE, shared_dense_model, shared_target
from framework.training.hooks import Hook

log = logging.getLogger(__name__)
DENSE_TAG = "card.role:dense"


def is_card_job(cfg: DictConfig) -> bool:
    """A pruned run of a card: it starts from its seed's dense model."""
    return bool(OmegaConf.select(cfg, "card.enabled")) and cfg.pruner.method != "none" and cfg.task == "train"


def card_dir(cfg: DictConfig, context) -> Path:
    """Where a card's shared parts live (dense models, solved targets): ``card.shared_dir``, else
    the sweep folder (a job's run dir is ``<sweep dir>/<job number>``)."""
    shared = OmegaConf.select(cfg, "card.shared_dir")
    return Path(shared) if shared else Path(context.run_dir).parent


def dense_config(cfg: DictConfig) -> DictConfig:
    """The dense model's run: the job's config without pruner, penalty or distillation, trained
    for ``card.dense_epochs`` (at ``card.dense_lr``), continuing where it stopped (resume=auto)."""
    data = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(data, dict)  # a config's root is a mapping
    data["pruner"] = {"_target_": "framework.pruning.build_pruner", "method": "none"}
    data["regularizer"], data["distill"] = {}, {}
    data["fold_batchnorm"], data["pretrained"], data["resume"] = False, None, "auto"
    data["epochs"] = cfg.card.dense_epochs
    if cfg.card.dense_lr is not None:
        data["optimizer"]["lr"] = cfg.card.dense_lr
    data["card"]["ratio"] = None
    data["tags"] = [*data.get("tags", []), DENSE_TAG]
    return OmegaConf.create(data)


def prepare_card_job(cfg: DictConfig, shared_dir: Path, train_dense: Callable[[DictConfig, Path], Path]) -> DictConfig:
    """The job's config with its seed's dense model as ``pretrained``; ``train_dense(config,
    folder)`` trains it in ``folder`` (once per seed and sweep) and returns its best checkpoint."""

    def train(folder: Path) -> None:
        best = train_dense(dense_config(cfg), folder)
        partial = folder / f"{DENSE_FILE}.tmp{os.getpid()}"
        shutil.copyfile(best, partial)  # the validation-selected dense weights (best.pt)
        os.replace(partial, folder / DENSE_FILE)

    dense = shared_dense_model(shared_dir, int(cfg.seed), train)
    prepared = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    assert isinstance(prepared, DictConfig)  # a config's root is a mapping
    prepared.pretrained = str(dense)
    return prepared


def set_target_from_ratio(cfg: DictConfig, model, input_shape, shared_dir: Path) -> float | None:
    """``card.ratio`` -> ``pruner.final_sparsity`` on this model (None when no ratio is asked);
    solved once per sweep for each model, structure and ratio."""
    ratio = OmegaConf.select(cfg, "card.ratio")
    if not is_card_job(cfg) or ratio is None:
        return None
    from framework.analysis.compression import sparsity_for_ratio

    node = OmegaConf.to_container(cfg.pruner, resolve=True)
    assert isinstance(node, dict)  # the pruner is a component: a mapping
    arguments = {str(k): v for k, v in node.items()}
    shaping = {k: v for k, v in arguments.items() if k not in ("_target_", "criterion", "scope", "final_sparsity")}
    model_node = OmegaConf.to_container(cfg.model, resolve=True)
    ranking = _global_ranking(cfg)
    # a global ranking prunes where the dense weights of this seed say: solved per criterion and seed
    extra = [cfg.pruner.criterion._target_, cfg.seed] if ranking else []
    steps = int(cfg.card.solve_steps)
    key = json.dumps([model_node, shaping, ratio, cfg.card.ratio_of, steps, *extra], sort_keys=True, default=str)

    def solve() -> float:
        sparsity, reached = sparsity_for_ratio(
            model, arguments, float(ratio), input_shape, cfg.card.ratio_of, steps=steps, ranking=ranking
        )
        scope = "global, this ranking" if ranking else "layer"
        log.info("card.ratio=%g (%s) reached x%.3f (%s scope)", ratio, cfg.card.ratio_of, reached, scope)
        return sparsity

    sparsity = shared_target(shared_dir, key, solve)
    log.info("card.ratio=%g (%s): pruner.final_sparsity=%.4f", ratio, cfg.card.ratio_of, sparsity)
    cfg.pruner.final_sparsity = float(sparsity)
    return sparsity


def _global_ranking(cfg: DictConfig) -> dict | None:
    """The run's own global ranking for the solver (its criterion on the dense weights), or None:
    layer scope (every criterion removes the same channel counts), or a criterion that needs data
    (bn_gamma needs none: it reads the BatchNorm scales, solved like a weight criterion)."""
    if cfg.pruner.get("scope") != "global":
        return None
    from framework.components import build_component
    from framework.pruning.scores.data_criteria import DataCriterion

    criterion = build_component("pruner.criterion", cfg.pruner.criterion)
    if isinstance(criterion, DataCriterion) and criterion.needs_for(cfg.pruner.structure):
        log.warning(
            "card.ratio with pruner.scope=global and a data-aware criterion: the target is solved at layer "
            "scope; the measured compression of this run tells where it lands"
        )
        return None
    return {"criterion": criterion, "scope": "global", "max_layer_sparsity": cfg.pruner.get("max_layer_sparsity")}


class TestSplitHook(Hook):
    """Top-1 and loss on the test split after each epoch (``test/...``): reported, never selected
    on (best.pt and the card's selection follow the validation split). Built before any data is
    read; :func:`give_test_split` hands it the split once the data is loaded."""

    def __init__(self) -> None:
        self.test_loader: DataLoader | None = None

    def after_epoch(self, trainer) -> None:
        if self.test_loader is None:  # a dataset without a test split: nothing to report
            return
        # the trainer's own evaluation (devices, ranks) on the test loader
        validation, trainer.val_loader = trainer.val_loader, self.test_loader
        try:
            metrics = trainer.evaluate()
        finally:
            trainer.val_loader = validation
        trainer.epoch_metrics.update({f"test/{k}": v for k, v in metrics.items()})


def give_test_split(hooks: Sequence[Hook], test_split: Dataset | None, batch_size: int) -> None:
    """The test split, once read, to a card run's :class:`TestSplitHook` (none in other runs)."""
    if test_split is None:
        return
    for hook in hooks:
        if isinstance(hook, TestSplitHook):
            hook.test_loader = DataLoader(test_split, batch_size=batch_size, shuffle=False)


class CardFiguresHook(Hook):
    """At the last epoch, the card's figures from every epoch of the run (``card/...``)."""

    def after_epoch(self, trainer) -> None:
        if trainer.is_last_epoch:
            trainer.epoch_metrics.update(selected_accuracy(trainer.history))
