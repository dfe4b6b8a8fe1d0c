"""A run, read top to bottom: :func:`run` takes the run dir and the ranks' agreement, then
:func:`train` or :func:`analyse_sensitivity`, both from the same :func:`build_parts`.

Under ``torchrun`` every process calls :func:`run`; they form one run: rank 0's run dir, rank 0's
files and tracker (see :mod:`framework.training.distributed`).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework.components import build_component
from framework.config import pruning_window
from framework.data import build_loaders, limit_batches, load_splits
from framework.errors import ConfigError
from framework.pruning.thinning.thin import apply_recipe, thinning_recipe
from framework.runner.context import RunContext
from framework.runner.first_batch import check_first_batches
from framework.runner.methods import give_calibration_data
from framework.runner.parts import build_deploy_hook, build_parts, build_thinning_hook, recorded_params
from framework.runner.pruning_hook import PruningHook
from framework.runner.ranks import agree_or_raise
from framework.runner.resume_guard import (
    ConfigRecordHook,
    apply_scheduler_arguments,
    checkpoint_to_resume,
    config_changes,
    refuse_pruner_change_after_thinning,
)
from framework.runner.summary import where_everything_is
from framework.tracking.metrics_file import MetricsFileHook
from framework.training import CheckpointHook, Trainer, load_checkpoint
from framework.training.checkpoint_checks import check_checkpoint_fields, check_checkpoint_fits
from framework.training.distributed import (
    SINGLE,
    DistContext,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from framework.training.log_hook import EpochLogHook
from framework.training.run_lock import lock_run_dir

log = logging.getLogger(__name__)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked KILLED and its checkpoint kept."""


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
            return train(cfg, context, ddp, resume_path)
    finally:
        shutdown_distributed()


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
        trainer = _set_up_training(cfg, context, ddp, resume_path)
    except Exception as failure:
        error = failure
    agree_or_raise(error, ddp)

    with _sigterm_as_interrupt():
        history = trainer.fit()
    final = history[-1] if history else {}
    if final:
        log.info(
            "finished: val/top1=%.4f val/loss=%.4f%s",
            final.get("val/top1", float("nan")),
            final.get("val/loss", float("nan")),
            f" sparsity/total={final['sparsity/total']:.4f}" if "sparsity/total" in final else "",
        )
    if ddp.is_main:
        log.info(where_everything_is(context.run_dir, history, trainer.hooks))
    return final


def _set_up_training(cfg: DictConfig, context: RunContext, ddp: DistContext, resume_path: Path | None) -> Trainer:
    """The parts, the loop's hooks, the data and the checkpoint: a Trainer ready to fit."""
    run_dir = context.run_dir
    checkpoint = load_checkpoint(resume_path) if resume_path is not None else None
    if checkpoint is not None:
        check_checkpoint_fields(checkpoint, resume_path, cfg.epochs)
    record = ConfigRecordHook(recorded_params(cfg))
    changes = (
        config_changes(checkpoint, record.params, allow=cfg.resume_changed == "allow") if checkpoint is not None else []
    )
    parts = build_parts(cfg, context, ddp, changes=changes)
    model, device, pruning_hook = parts.model, parts.device, parts.pruning_hook
    thinning_hook = build_thinning_hook(cfg, pruning_hook, run_dir, parts.input_shape)
    mask_sync = None
    if ddp.enabled and pruning_hook is not None:
        from framework.runner.mask_sync import MaskSync

        mask_sync = MaskSync(pruning_hook.pruner, ddp, run_dir if ddp.is_main else None)
        pruning_hook.on_masks_updated = mask_sync
        if not ddp.is_main:  # only rank 0 writes the reports and the thinned model
            pruning_hook.report_dir = None
            if thinning_hook is not None:
                thinning_hook.writes_files = False
    recipe = thinning_recipe(checkpoint) if checkpoint is not None else None
    refuse_pruner_change_after_thinning(recipe is not None, changes, pruned=pruning_hook is not None)
    if recipe is not None:  # the checkpoint holds the thinned model: rebuild its architecture
        apply_recipe(model, recipe, checkpoint["model"] if isinstance(checkpoint.get("model"), Mapping) else None)
        model.to(device)
        pruning_hook.freeze()
    optimizer = build_component("optimizer", cfg.optimizer, params=model.parameters())
    lr_scheduler = build_component("lr_scheduler", cfg.lr_scheduler, optimizer=optimizer) if cfg.lr_scheduler else None

    # -- from here on, data is read ----------------------------------------------------------
    bundle = load_splits(parts.data_source, cfg.dataset._target_)
    check_data(cfg, parts, bundle)
    parts.description.preprocessing = bundle.preprocessing  # a tracker may log it beside the model
    bundle = limit_batches(bundle, cfg.loader.batch_size, cfg.loader.limit_train_batches, cfg.loader.limit_val_batches)
    train_loader, val_loader = build_loaders(
        bundle,
        batch_size=cfg.loader.batch_size,
        num_workers=cfg.loader.num_workers,
        seed=cfg.seed,
        rank=ddp.rank,
        world_size=ddp.world_size,
    )
    if pruning_hook is not None:  # a data-aware criterion ranks on seeded training batches
        give_calibration_data(pruning_hook.pruner, bundle.train, cfg.loader.batch_size, cfg.seed, ddp.rank)
    # Ranks > 0 train, prune and thin like rank 0, but write nothing: no log, metrics, tracker or checkpoint.
    writers = (
        (EpochLogHook(also_shown=PruningHook.SHOWN_IN_LOG), MetricsFileHook(run_dir), *parts.trackers)
        if ddp.is_main
        else ()
    )
    deploy_hook = build_deploy_hook(
        cfg, pruning_hook, thinning_hook, run_dir, parts.input_shape, writes_files=ddp.is_main
    )
    # distillation before pruning: its dense teacher is copied before the first pruning step
    parts_in_order = (record, *parts.method_hooks, pruning_hook, mask_sync, thinning_hook, deploy_hook, *writers)
    hooks: list[Any] = [h for h in parts_in_order if h is not None]
    if ddp.is_main:
        hooks.append(
            CheckpointHook(
                run_dir / "checkpoints",
                best_metric=_first_metric(cfg.optimized_metric),
                best_from_epoch=_final_sparsity_epoch(cfg) if pruning_hook is not None else 0,
            )
        )
        if cfg.profile_steps > 0:
            from framework.training.profiler_hook import ProfilerHook

            hooks.append(ProfilerHook(run_dir / "profile", cfg.profile_steps))
    parallel = None
    if ddp.enabled:
        from framework.training.ddp import DataParallel

        parallel = DataParallel(ddp, device, sync_batchnorm=cfg.distributed.sync_batchnorm)
    trainer = Trainer(
        model,
        optimizer,
        train_loader,
        val_loader,
        epochs=cfg.epochs,
        device=device,
        lr_scheduler=lr_scheduler,
        hooks=hooks,
        progress=cfg.progress and ddp.is_main,  # one bar, rank 0's
        loader_generator=getattr(train_loader, "generator", None),
        parallel=parallel,
    )
    if checkpoint is not None:
        check_checkpoint_fits(checkpoint, resume_path, model, optimizer)
        if changes:  # resume_changed=allow: the pruner's method may be new; its masks still apply
            checkpoint.get("hooks", {}).get("pruning", {}).pop("method", None)
            checkpoint.get("hooks", {}).get("pruning", {}).pop("structure", None)
        trainer.load_state_dict(checkpoint)
        if changes:
            apply_scheduler_arguments(lr_scheduler, OmegaConf.to_container(cfg.lr_scheduler, resolve=True) or {})
            log.warning("resumed with a changed config: %s", "; ".join(changes))
        log.info("resumed at epoch %d from %s", trainer.start_epoch, resume_path)
    return trainer


def _first_metric(optimized_metric: Any) -> str:
    """best.pt follows the first of several optimized metrics (a multi-objective sweep)."""
    return optimized_metric if isinstance(optimized_metric, str) else list(optimized_metric)[0]


def _final_sparsity_epoch(cfg: DictConfig) -> int:
    """The first epoch that ends at the final sparsity: the schedule's last pruning epoch."""
    start, end = pruning_window(cfg.schedule, cfg.epochs)
    epochs = list(range(start, end, cfg.schedule.frequency))
    return epochs[-1] if epochs else 0


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
    give_calibration_data(parts.pruning_hook.pruner, bundle.train, cfg.loader.batch_size, cfg.seed)
    return analyse(
        cfg,
        context.run_dir,
        context.overrides,
        parts.model,
        parts.pruning_hook.pruner,
        val_loader,
        parts.device,
        parts.input_shape,
        parts.trackers,
    )


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum, frame):
        raise Terminated(f"received signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
