"""A run, read top to bottom: :func:`run` takes the run dir and the ranks' agreement, then
:func:`train` or :func:`analyse_sensitivity`, both from the same :func:`build_parts`.

Under ``torchrun`` every process calls :func:`run`; they form one run: rank 0's run dir, rank 0's
files and tracker (see :mod:`framework.process.distributed`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework.components import build_component
from framework.config import trains_language_model, validate
from framework.data import build_loaders, limit_batches, load_splits
from framework.errors import ConfigError
from framework.models.causal_lm import token_cross_entropy
from framework.process.distributed import (
    SINGLE,
    DistContext,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from framework.process.ranks import agree_or_raise
from framework.process.run_lock import lock_run_dir
from framework.process.signals import sigterm_as_interrupt
from framework.pruning.thinning.thin import apply_recipe, thinning_recipe
from framework.run_context import BEST_CHECKPOINT, RunContext
from framework.runner.budget_table import check_budget_fits_the_job
from framework.runner.card import card_dir, give_test_split, is_card_job, prepare_card_job
from framework.runner.first_batch import check_first_batches
from framework.runner.hooks import build_hooks
from framework.runner.lm_parts import build_language_model_parts, token_blocks
from framework.runner.methods import give_calibration_data
from framework.runner.parts import Parts, build_parts, recorded_params, resolved
from framework.runner.resume_guard import (
    apply_scheduler_arguments,
    checkpoint_to_resume,
    config_changes,
    refuse_pruner_change_after_thinning,
)
from framework.runner.summary import headline_metric, where_everything_is
from framework.tracking.group import Trackers
from framework.training import Trainer, load_checkpoint
from framework.training.checkpoint_checks import check_checkpoint_fields, check_checkpoint_fits
from framework.training.fast_path import Acceleration

log = logging.getLogger(__name__)


def run_checked(cfg: DictConfig, context: RunContext) -> dict[str, float]:
    """Run ``cfg`` (``cfg.task``), already checked by :func:`framework.runner.entry.run`, in
    ``context.run_dir``; returns the last epoch's metrics (the analysis's headline figures for
    task=sensitivity)."""
    ddp = init_distributed(cfg.distributed.timeout_s, cfg.distributed.backend)
    try:
        context = _shared_run_dir(context, ddp)
        lock, resume_path, error = None, None, None
        try:
            context.run_dir.mkdir(parents=True, exist_ok=True)
            if ddp.is_main:  # one run per run dir; released however the run ends
                lock = lock_run_dir(context.run_dir)
                resume_path = checkpoint_to_resume(cfg, context)
        except Exception as failure:
            error = failure
        agree_or_raise(error, ddp)
        resume_path = broadcast_object(resume_path, ddp)  # every rank resumes rank 0's choice
        with lock if lock is not None else nullcontext():
            if cfg.print_config and ddp.is_main:
                log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True).rstrip())
            if cfg.task == "sensitivity":
                if ddp.enabled:
                    raise ConfigError(
                        "task=sensitivity runs in one process; allowed: python run.py (sensitivity.workers=N forks workers)"
                    )
                return analyse_sensitivity(cfg, context)
            if cfg.task == "eval":
                if ddp.enabled:
                    raise ConfigError("task=eval runs in one process; allowed: python run.py task=eval ...")
                from framework.runner.eval_task import evaluate

                return evaluate(cfg, context)
            if cfg.task == "oneshot":
                if ddp.enabled:
                    raise ConfigError("task=oneshot runs in one process; allowed: python run.py task=oneshot ...")
                from framework.runner.oneshot_task import oneshot

                return oneshot(cfg, context, resume_path)
            if trains_language_model(cfg) and ddp.enabled:
                raise ConfigError("a language model trains in one process; allowed: python run.py task=train ...")
            check_budget_fits_the_job(cfg, ddp)
            if is_card_job(cfg):  # starts from its seed's dense model, trained once per sweep
                cfg = prepare_card_job(cfg, card_dir(cfg, context), _dense_trainer(context))
            return train(cfg, context, ddp, resume_path)
    finally:
        shutdown_distributed()


def _dense_trainer(context: RunContext):
    """Trains a card's dense model in ``folder`` as a run of its own (nested under the sweep's
    parent run); returns its validation-selected checkpoint."""

    def train_dense(dense_cfg: DictConfig, folder: Path) -> Path:
        validate(dense_cfg)
        dense_context = RunContext(run_dir=folder, overrides=["card.role=dense"], parent_run_id=context.parent_run_id)
        run_checked(dense_cfg, dense_context)
        return dense_context.checkpoints / BEST_CHECKPOINT

    return train_dense


def _shared_run_dir(context: RunContext, ddp: DistContext) -> RunContext:
    """Every rank takes rank 0's run dir (Hydra's timestamped dirs may differ by a second); the
    empty dir Hydra made for another rank is removed."""
    if not ddp.enabled:
        return context
    shared = Path(broadcast_object(str(context.run_dir), ddp))
    if shared != context.run_dir:
        try:
            context.run_dir.rmdir()  # only if empty: run.py gives ranks > 0 no .hydra/ nor log
        except OSError:
            pass
        context = replace(context, run_dir=shared, hydra_dir=None)
    return context


def train(
    cfg: DictConfig, context: RunContext, ddp: DistContext = SINGLE, resume_path: Path | None = None
) -> dict[str, float]:
    """``task=train``: train (prune, thin) as ``cfg`` says, from ``resume_path`` when given."""
    error = None
    try:  # no collective inside: a rank that fails here must reach agree_or_raise below
        trainer, trackers = _set_up_training(cfg, context, ddp, resume_path)
    except Exception as failure:
        error = failure
    agree_or_raise(error, ddp)

    with sigterm_as_interrupt():
        history = trainer.fit()
    final = history[-1] if history else {}
    if final:
        shown = headline_metric(final)
        log.info(
            "finished: %s=%.4f val/loss=%.4f%s",
            shown,
            final.get(shown, float("nan")),
            final.get("val/loss", float("nan")),
            f" sparsity/total={final['sparsity/total']:.4f}" if "sparsity/total" in final else "",
        )
    if ddp.is_main:
        log.info(where_everything_is(context, history, trackers.where()))
    return final


def _set_up_training(
    cfg: DictConfig, context: RunContext, ddp: DistContext, resume_path: Path | None
) -> tuple[Trainer, Trackers]:
    """checkpoint -> parts -> hooks -> data -> trainer -> resume: a Trainer ready to fit, and the
    trackers its hooks drive."""
    checkpoint, changes = _checkpoint(cfg, resume_path)
    language = trains_language_model(cfg)
    if language:
        parts = build_language_model_parts(cfg, context, ddp, changes=changes)
    else:
        parts = build_parts(cfg, context, ddp, changes=changes)
        _rebuild_thinned_architecture(parts, checkpoint, changes)
    hooks = [placed.hook for placed in build_hooks(cfg, parts, ddp)]
    # -- from here on, data is read ----------------------------------------------------------
    bundle, train_loader, val_loader = _training_data(cfg, parts, ddp)
    give_test_split(hooks, bundle.test, cfg.loader.batch_size)  # a card's runs report the test split
    model = parts.model
    optimizer = build_component("optimizer", cfg.optimizer, params=model.parameters())
    lr_scheduler = build_component("lr_scheduler", cfg.lr_scheduler, optimizer=optimizer) if cfg.lr_scheduler else None
    parallel = None
    if ddp.enabled:
        from framework.training.ddp import DataParallel

        parallel = DataParallel(ddp, parts.device, sync_batchnorm=cfg.distributed.sync_batchnorm)
    acceleration = Acceleration(parallel, str(cfg.precision), bool(cfg.compile), bool(cfg.channels_last))
    trainer = Trainer(
        model,
        optimizer,
        train_loader,
        val_loader,
        epochs=cfg.epochs,
        device=parts.device,
        lr_scheduler=lr_scheduler,
        hooks=hooks,
        progress=cfg.progress and ddp.is_main,  # one bar, rank 0's
        acceleration=acceleration,
        preprocessing=bundle.preprocessing,
        loss_fn=token_cross_entropy if language else None,
    )
    if checkpoint is not None:
        assert resume_path is not None  # the checkpoint was read from it
        _resume(cfg, trainer, checkpoint, resume_path, changes)
    return trainer, parts.trackers


def _checkpoint(cfg: DictConfig, resume_path: Path | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The checkpoint to resume (its fields checked) and what changed in the config since it."""
    if resume_path is None:
        return None, []
    checkpoint = load_checkpoint(resume_path)
    check_checkpoint_fields(checkpoint, resume_path, cfg.epochs)
    changes = config_changes(checkpoint, recorded_params(cfg), allow=cfg.resume_changed == "allow")
    return checkpoint, changes


def _rebuild_thinned_architecture(parts: Parts, checkpoint: dict[str, Any] | None, changes: list[str]) -> None:
    """A checkpoint taken after thinning holds the small model: the model is rebuilt to its recipe
    (before the optimizer takes its parameters); its pruner settings cannot change."""
    recipe = thinning_recipe(checkpoint) if checkpoint is not None else None
    refuse_pruner_change_after_thinning(recipe is not None, changes, pruned=parts.pruner is not None)
    if checkpoint is not None and recipe is not None:
        weights = checkpoint.get("model")
        apply_recipe(parts.model, recipe, weights if isinstance(weights, Mapping) else None)
        parts.model.to(parts.device)


def _training_data(cfg: DictConfig, parts: Parts, ddp: DistContext):
    """The splits (their first batches checked), the loaders (a shard per rank), and the seeded
    calibration batches of a data-aware criterion."""
    if parts.language is not None:  # token blocks: a model with vocabulary logits at every position
        bundle = token_blocks(parts.data_source.load())
    else:
        bundle = load_splits(parts.data_source, cfg.dataset._target_)
        check_data(cfg, parts, bundle)
    bundle = limit_batches(bundle, cfg.loader.batch_size, cfg.loader.limit_train_batches, cfg.loader.limit_val_batches)
    train_loader, val_loader = build_loaders(
        bundle,
        batch_size=cfg.loader.batch_size,
        num_workers=cfg.loader.num_workers,
        seed=cfg.seed,
        rank=ddp.rank,
        world_size=ddp.world_size,
        pin_memory=parts.device.type == "cuda",  # with the trainer's non-blocking copies
    )
    give_calibration_data(parts.pruner, bundle.train, cfg.loader.batch_size, cfg.seed, ddp.rank)
    return bundle, train_loader, val_loader


def _resume(cfg: DictConfig, trainer: Trainer, checkpoint: dict[str, Any], path: Path, changes: list[str]) -> None:
    """Every part continues where the checkpoint left off (each hook takes its own state)."""
    check_checkpoint_fits(checkpoint, path, trainer.model, trainer.optimizer)
    trainer.load_state_dict(checkpoint)
    if changes:  # resume_changed=allow: the new scheduler arguments take effect from the next step
        apply_scheduler_arguments(trainer.lr_scheduler, resolved(cfg.lr_scheduler))
        log.warning("resumed with a changed config: %s", "; ".join(changes))
    log.info("resumed at epoch %d from %s", trainer.start_epoch, path)


def check_data(cfg: DictConfig, parts, bundle) -> None:
    """The first batch of each split and the model's output for it, before any step (one line each)."""
    check_first_batches(
        bundle,
        parts.model,
        parts.device,
        cfg.loader.batch_size,
        parts.num_classes,
        parts.input_shape,
        cfg.dataset._target_,
        f"model._target_={cfg.model._target_}",
    )


def analyse_sensitivity(cfg: DictConfig, context: RunContext) -> dict[str, float]:
    """``task=sensitivity``: the same parts as training (a one-shot pruner that the analysis sets
    unit by unit, no optimizer), then :mod:`framework.runner.sensitivity_task` on the validation split."""
    from framework.runner.sensitivity_task import analyse

    parts = build_parts(cfg, context, SINGLE, schedule_window=(0, 1, 1, None))
    bundle = load_splits(parts.data_source, cfg.dataset._target_)
    check_data(cfg, parts, bundle)
    # forked analysis workers evaluate in their own process: no loader workers below them
    workers = 0 if cfg.sensitivity.workers > 1 else cfg.loader.num_workers
    _, val_loader = build_loaders(bundle, batch_size=cfg.loader.batch_size, num_workers=workers, seed=cfg.seed)
    give_calibration_data(parts.pruner, bundle.train, cfg.loader.batch_size, cfg.seed)
    return analyse(cfg, parts, val_loader)
