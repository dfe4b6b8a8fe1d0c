"""The training loop's hooks, built in one place and in their final form: :func:`build_hooks`.

The order is the trainer's calling order at every event, and each position says why it is
there. Every choice that depends on the process's rank is made here: ranks > 0 train, prune and
thin like rank 0, but write no file, log no line and track nothing. Hooks never hold one another;
they talk through the trainer (``weights_edited``, ``replace_model``, ``exports``). This module is
the only one that constructs hooks (tests/test_architecture.py checks it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from framework.components import build_component
from framework.config import pruning_window
from framework.process.distributed import DistContext
from framework.runner.card import CardFiguresHook, TestSplitHook
from framework.runner.deploy_hook import DeployHook
from framework.runner.language_model_hook import LanguageModelSaveHook
from framework.runner.parts import Parts, recorded_params
from framework.runner.pruning_hook import PruningHook
from framework.runner.resume_guard import ConfigRecordHook
from framework.runner.run_files import training_files
from framework.runner.thinning_hook import ThinningHook
from framework.tracking.hook import TrackingHook
from framework.training import CheckpointHook
from framework.training.distillation import DistillationHook
from framework.training.early_stopping import EarlyStoppingHook
from framework.training.fixed_zeros import FixedZerosHook
from framework.training.hooks import Hook
from framework.training.log_hook import EpochLogHook
from framework.training.loss_terms import LossTermHook
from framework.training.perplexity_hook import PerplexityHook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlacedHook:
    """A hook at its position, and why it is there."""

    hook: Hook
    why: str


def build_hooks(cfg: DictConfig, parts: Parts, ddp: DistContext) -> list[PlacedHook]:
    """The hooks of a training run in the trainer's calling order (see docs/architecture.md)."""
    main = ddp.is_main  # rank 0 alone writes files, logs lines and tracks
    context, pruner = parts.context, parts.pruner
    placed: list[PlacedHook] = []

    def place(hook: Hook | None, why: str) -> None:
        if hook is not None:
            placed.append(PlacedHook(hook, why))

    place(ConfigRecordHook(recorded_params(cfg)), "anywhere: only state, the run's config in every checkpoint")
    place(
        distillation_hook(cfg, parts),
        "before pruning: the dense teacher is the model as it is when the first pruning epoch starts",
    )
    place(
        LossTermHook(parts.regularizer.bind(parts.model, pruner)) if parts.regularizer is not None else None,
        "after distillation: the penalty is added to the loss distillation made, not scaled by its alpha",
    )
    if parts.language is not None and parts.language.fixed_zeros:
        place(
            FixedZerosHook(parts.language.fixed_zeros),
            "before pruning: the zeros the model came with are back before the pruner re-applies its own masks",
        )
    place(
        pruning_hook(parts, report=main),
        "before the hooks that read the model: masks set when an epoch starts, re-applied after each step",
    )
    if ddp.enabled and pruner is not None:
        from framework.runner.mask_sync import MaskSync

        place(
            MaskSync(pruner, ddp, context.distributed_record if main else None),
            "after pruning (several processes): each mask update heard at once, rank 0's masks on every rank",
        )
    if parts.language is not None:
        place(PerplexityHook(), "before early stopping and best.pt: val/perplexity is the optimized metric")
    place(
        early_stopping_hook(cfg, pruned=pruner is not None),
        "after the hooks that add metrics, before the last-epoch hooks: an epoch it stops after is the last one",
    )
    place(
        thinning_hook(cfg, parts, writes_files=main),
        "after pruning's metrics: the masked model is measured, then replaced by the thinned one",
    )
    if parts.language is None:
        place(deploy_hook(cfg, parts, builds=main), "after thinning: the deployable model is the final, thinned one")
    elif main and cfg.deploy.enabled:
        place(
            LanguageModelSaveHook(context.language_model, parts.language.tokenizer),
            "a language model's deploy step: save_pretrained of the final model, before tracking logs the files",
        )
    if cfg.card.enabled:  # every rank: the test split is evaluated like the validation split
        place(TestSplitHook(), "after deploy: the final model's test split, reported beside validation")
        place(CardFiguresHook(), "after the test split: the card's figures read every epoch's metrics")
    if not main:
        return placed
    shown = (*PruningHook.SHOWN_IN_LOG, *(PerplexityHook.SHOWN_IN_LOG if parts.language is not None else ()))
    place(EpochLogHook(also_shown=shown), "after every hook that adds metrics: the epoch's line")
    place(
        TrackingHook(
            parts.trackers, training_files(context, pruned=pruner is not None, language=parts.language is not None)
        ),
        "after every hook that adds metrics or files: the trackers get each epoch whole, and the files at the end",
    )
    place(
        CheckpointHook(
            context.checkpoints,
            best_metric=_first_metric(cfg.optimized_metric),
            best_from_epoch=_final_sparsity_epoch(cfg) if pruner is not None else 0,
        ),
        "last in an epoch: written once every hook finished it, so a resumed run redoes an epoch that failed",
    )
    if cfg.profile_steps > 0:
        from framework.training.profiler_hook import ProfilerHook

        place(ProfilerHook(context.profile, cfg.profile_steps), "anywhere: it records steps, not epochs")
    return placed


def early_stopping_hook(cfg: DictConfig, pruned: bool) -> EarlyStoppingHook | None:
    """``early_stopping.patience``: on the first optimized metric, like best.pt, and counted from the
    epoch that ends at the final sparsity (a pruned run never stops short of its target)."""
    patience = cfg.early_stopping.patience
    if patience is None:
        return None
    return EarlyStoppingHook(
        _first_metric(cfg.optimized_metric),
        int(patience),
        float(cfg.early_stopping.min_delta),
        count_from=_final_sparsity_epoch(cfg) if pruned else 0,
    )


def pruning_hook(parts: Parts, report: bool) -> PruningHook | None:
    if parts.pruner is None:
        return None
    return PruningHook(
        parts.pruner,
        report_dir=parts.context.pruning if report else None,
        input_shape=parts.input_shape,
        fold_pairs=parts.fold_pairs,
        method_may_change=bool(parts.changes),
    )


def thinning_hook(cfg: DictConfig, parts: Parts, writes_files: bool) -> ThinningHook | None:
    """The hook that makes the model smaller, when the pruner says so (``pruner.thin``)."""
    pruner = parts.pruner
    if pruner is None or pruner.thin_when == "never":
        return None
    return ThinningHook(
        pruner,
        pruner.thin_when,
        parts.input_shape,
        parts.context.thinned,
        batch_size=cfg.loader.batch_size,
        writes_files=writes_files,
        latency_table=parts.latency_table,
    )


def deploy_hook(cfg: DictConfig, parts: Parts, builds: bool) -> DeployHook | None:
    """The deployable model at the end of the run (``deploy.*``); with N:M, the pattern check."""
    nm = parts.pruner.nm if parts.pruner is not None else None
    enabled = cfg.deploy.enabled and _deploy_packages_installed(builds)
    if not enabled:
        if cfg.tracking.get("log_model"):
            log.info(
                "%s: no servable model is logged (tracking.log_model needs the deploy step's ONNX files); "
                "the checkpoint and the thinned model are logged as files",
                "deploy.enabled=false" if not cfg.deploy.enabled else "no deploy step",
            )
        if nm is None:
            return None
    return DeployHook(
        cfg.deploy.quantize,
        cfg.deploy.int8_calibration_batches,
        parts.input_shape,
        parts.context.deploy,
        cfg.loader.batch_size,
        cfg.seed,
        nm=nm,
        parameter_names=parts.pruner.parameter_names if parts.pruner is not None else (),
        builds=enabled and builds,
        required=bool(cfg.deploy.required),
        max_int8_drop=cfg.deploy.max_int8_drop,
        latency_table=parts.latency_table,
    )


def _deploy_packages_installed(says: bool) -> bool:
    """A base install (no onnx extra) runs the default command: the deploy step is left out and
    said once (``says``: rank 0); asked for by name (int8, deploy.required) it was refused earlier."""
    from framework.deploy.errors import missing_line

    missing = missing_line("the deploy step (deploy.enabled=true)")
    if missing is not None and says:
        log.warning("%s; the step is left out of this run (deploy.enabled=false says so quietly)", missing)
    return missing is None


def distillation_hook(cfg: DictConfig, parts: Parts) -> DistillationHook | None:
    """``distill=kd``: a dense teacher copied when pruning starts, or the teacher file's model."""
    kd = parts.distillation
    if kd is None:
        return None
    input_shape, num_classes = parts.input_shape, parts.num_classes

    def architecture() -> torch.nn.Module:  # the run's model as built, without pretrained weights
        return build_component(
            "model", cfg.model, num_classes=num_classes, in_channels=input_shape[0], input_shape=tuple(input_shape)
        )

    parameter = next(parts.model.parameters())
    example = torch.zeros(2, *input_shape, dtype=parameter.dtype, device=parameter.device)
    teacher = kd.teacher_model(parts.model, architecture, example)
    if teacher is not None:
        return DistillationHook(kd.temperature, kd.alpha, teacher=teacher)
    start = parts.pruner.schedule.starting_epoch if parts.pruner is not None else 0
    return DistillationHook(kd.temperature, kd.alpha, snapshot_epoch=int(start or 0), architecture=architecture)


def _first_metric(optimized_metric) -> str:
    """best.pt follows the first of several optimized metrics (a multi-objective sweep)."""
    return optimized_metric if isinstance(optimized_metric, str) else list(optimized_metric)[0]


def _final_sparsity_epoch(cfg: DictConfig) -> int:
    """The first epoch that ends at the final sparsity: the schedule's last pruning epoch."""
    start, end = pruning_window(cfg.schedule, cfg.epochs)
    epochs = list(range(start, end, cfg.schedule.frequency))
    return epochs[-1] if epochs else 0
