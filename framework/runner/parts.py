"""Every part of a run, built and checked before any data is read: :func:`build_parts`.

Order matters: everything that can be checked without data is checked first (files, model,
pruning patterns, BN-fold tracing, the tracking store), so a typo fails in a second; only then
does the task read the dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from framework.components import build_component
from framework.config import pruning_window
from framework.errors import ConfigError, short_reason
from framework.pruning.scores.bn_fold import pairs_report
from framework.runner.context import RunContext
from framework.runner.first_batch import check_output
from framework.runner.methods import build_method_hooks
from framework.runner.pruning_hook import PruningHook
from framework.runner.thinning_hook import ThinningHook
from framework.tracking.description import RunDescription
from framework.tracking.trackers import as_hooks
from framework.training.distributed import SINGLE, DistContext, resolve_device
from framework.training.rng import seed_everything

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """What both tasks start from."""

    data_source: Any
    num_classes: int
    input_shape: tuple[int, ...]
    device: torch.device
    model: torch.nn.Module
    pruning_hook: PruningHook | None  # None for pruner.method=none
    description: RunDescription  # what the trackers are told
    trackers: list[Any] = field(default_factory=list)  # loop hooks; empty with tracking=none or on ranks > 0
    method_hooks: list[Any] = field(default_factory=list)  # distillation, sparsity penalty (training only)


def build_parts(
    cfg: DictConfig,
    context: RunContext,
    ddp: DistContext = SINGLE,
    *,
    schedule_window: tuple[int, int, int, int | None] | None = None,
    changes: Sequence[str] = (),
) -> Parts:
    """Data source (described, unread), model with its pretrained weights on its device, the pruner
    (built once, in its hook), and the trackers of rank 0, connected to their store.

    ``schedule_window`` (starting epoch, ending epoch, frequency, step frequency) replaces the
    configured schedule: the sensitivity analysis prunes one-shot and sets each unit's level itself."""
    data_source = build_data_source(cfg)
    num_classes, input_shape = int(data_source.num_classes), tuple(int(s) for s in data_source.input_shape)
    if cfg.pretrained:
        from framework.models import check_pretrained_file

        check_pretrained_file(cfg.pretrained)
    elif cfg.task == "sensitivity":
        log.warning("task=sensitivity without pretrained=...: analysing an untrained model")
    device = resolve_device(cfg.device, ddp)
    if cfg.task == "train" and cfg.distributed.sync_batchnorm and device.type != "cuda":
        raise ConfigError(f"distributed.sync_batchnorm=true needs CUDA; this run is on {device.type}; allowed: false")
    seed_everything(cfg.seed)
    model = build_model(cfg, num_classes, input_shape)
    model.to(device)
    pruning_hook = build_pruning_hook(cfg, model, context.run_dir, input_shape, schedule_window)
    method_hooks = build_method_hooks(cfg, model, pruning_hook, num_classes, input_shape) if cfg.task == "train" else []
    description = RunDescription(
        run_dir=context.run_dir,
        task=cfg.task,
        overrides=list(context.overrides),
        hydra_dir=context.hydra_dir,
        job_num=context.job_num,
        swept_keys=list(context.swept_keys),
        parent_run_id=context.parent_run_id,
        changes=list(changes),
        pruned=pruning_hook is not None and cfg.task == "train",
        fold_pairs=pruning_hook.fold_pairs if pruning_hook is not None and cfg.task == "train" else None,
        input_shape=input_shape,
        params=params_in_use(cfg),
        world_size=ddp.world_size,
        tags=list(cfg.tags),
    )
    # Ranks > 0 train, prune and thin like rank 0, but track nothing.
    trackers = as_hooks(build_component("tracking", cfg.tracking, run=description)) if ddp.is_main else []
    for tracker in trackers:
        connect = getattr(tracker, "connect", None)
        if callable(connect):
            connect()  # an unreachable store fails here, before any data is read
    return Parts(
        data_source, num_classes, input_shape, device, model, pruning_hook, description, trackers, method_hooks
    )


def build_data_source(cfg: DictConfig):
    """The dataset component, described (classes, input shape) and its files checked, unread."""
    from framework.data import as_data_source

    source = as_data_source(build_component("dataset", cfg.dataset), cfg.dataset._target_)
    check = getattr(source, "check", None)
    if callable(check):
        check()
    return source


def build_model(cfg: DictConfig, num_classes: int, input_shape: Sequence[int]) -> torch.nn.Module:
    """The model component; the dataset supplies ``num_classes``, ``in_channels`` and
    ``input_shape`` to a target whose signature takes them."""
    model = build_component(
        "model", cfg.model, num_classes=num_classes, in_channels=input_shape[0], input_shape=tuple(input_shape)
    )
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(
            f"model._target_={cfg.model._target_} returned a {type(model).__name__}; allowed: a torch.nn.Module"
        )
    if cfg.pretrained:
        from framework.models import load_pretrained

        load_pretrained(model, cfg.pretrained)
    named = f" (model.name={cfg.model.name})" if "name" in cfg.model else ""
    _check_forward(model, f"model._target_={cfg.model._target_}{named}", input_shape, num_classes)
    return model


@torch.no_grad()
def _check_forward(model: torch.nn.Module, described: str, input_shape: Sequence[int], num_classes: int) -> None:
    """One forward pass on a dummy batch, so that a model that cannot take the dataset's inputs
    (alexnet on 32x32) or whose output is not ``[batch, num_classes]`` fails now with one line
    instead of at the first training step."""
    was_training = model.training
    model.eval()  # no BatchNorm statistics move, no dropout draws from the RNG
    try:
        output = model(torch.zeros(2, *input_shape))
    except Exception as error:
        raise ConfigError(
            f"{described} cannot take the dataset's inputs of shape {tuple(input_shape)}: "
            f"{short_reason(error)}; choose a model for this input size or another dataset"
        ) from None
    finally:
        model.train(was_training)
    check_output(output, 2, num_classes, described)


def build_pruning_hook(cfg: DictConfig, model, run_dir: Path, input_shape, schedule_window=None) -> PruningHook | None:
    """The pruner (built here, once) in the hook that plugs it into the loop; None for method=none."""
    if cfg.pruner.method == "none":
        if cfg.fold_batchnorm:
            log.warning("fold_batchnorm=true has no effect with pruner.method=none")
        return None
    if schedule_window is None:
        starting_epoch, ending_epoch = pruning_window(cfg.schedule, cfg.epochs)
        schedule_window = (starting_epoch, ending_epoch, cfg.schedule.frequency, cfg.schedule.step_frequency)
    starting_epoch, ending_epoch, frequency, step_frequency = schedule_window
    pruner = build_component(
        "pruner",
        cfg.pruner,
        model=model,
        starting_epoch=starting_epoch,
        ending_epoch=ending_epoch,
        frequency=frequency,
        step_frequency=step_frequency,
        fold_batchnorm=cfg.fold_batchnorm,
        input_shape=tuple(input_shape),
    )
    fold_pairs = None
    if cfg.fold_batchnorm:
        fold_pairs = pairs_report(pruner.fold_pairs)
        if not fold_pairs:
            log.warning(
                "fold_batchnorm=true but no layer of %s feeds a BatchNorm directly: nothing is folded",
                type(model).__name__,
            )
        else:
            log.info("fold_batchnorm: %d layers folded", len(fold_pairs))
    return PruningHook(pruner, report_dir=run_dir / "pruning", input_shape=input_shape, fold_pairs=fold_pairs)


def build_thinning_hook(cfg: DictConfig, pruning_hook: PruningHook | None, run_dir: Path, input_shape):
    """The hook that makes the model smaller, when the pruner says so (``pruner.thin``)."""
    if pruning_hook is None or pruning_hook.pruner.thin_when == "never":
        return None
    return ThinningHook(
        pruning_hook.pruner,
        pruning_hook,
        pruning_hook.pruner.thin_when,
        input_shape,
        run_dir / "thinned",
        batch_size=cfg.loader.batch_size,
    )


def build_deploy_hook(
    cfg: DictConfig,
    pruning_hook: PruningHook | None,
    thinning_hook,
    run_dir: Path,
    input_shape,
    writes_files: bool = True,
):
    """The deployable model at the end of the run (``deploy.*``); with N:M, the pattern check."""
    from framework.runner.deploy_hook import DeployHook

    pruner = pruning_hook.pruner if pruning_hook is not None else None
    if not cfg.deploy.enabled and (pruner is None or pruner.nm is None):
        return None
    return DeployHook(
        cfg.deploy.quantize,
        cfg.deploy.calibration_batches,
        input_shape,
        run_dir / "deploy",
        cfg.loader.batch_size,
        thinning_hook=thinning_hook,
        pruner=pruner,
        builds=cfg.deploy.enabled,
        writes_files=writes_files,
    )


def recorded_params(cfg: DictConfig) -> dict[str, str]:
    """What a checkpoint records of its config: the params, and the store its tracker logs to."""
    from framework.tracking.params import flatten_config

    return {**flatten_config(params_in_use(cfg)), "tracking.uri": str(cfg.tracking.get("uri"))}


def params_in_use(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without what this run does not use: the schedule of a dense run, an
    empty lr_scheduler node, and the settings that say where results go rather than what ran."""
    used = OmegaConf.to_container(cfg, resolve=True)
    for key in ("tracking", "progress", "resume", "resume_changed", "optimized_metric", "paths", "tags"):
        used.pop(key, None)
    for key in ("limit_train_batches", "limit_val_batches"):  # params only when set (debug presets)
        if used["loader"].get(key) is None:
            used["loader"].pop(key, None)
    if not used.get("profile_steps"):
        used.pop("profile_steps", None)
    if cfg.get("task", "train") == "train":  # the analysis settings only matter to task=sensitivity
        used.pop("task", None)
        used.pop("sensitivity", None)
    if cfg.pruner.method == "none":
        used.pop("schedule", None)
    else:  # the epoch the schedule really ends at, not the null that means "half of training"
        used["schedule"]["ending_epoch"] = pruning_window(cfg.schedule, cfg.epochs)[1]
    if not cfg.lr_scheduler:
        used.pop("lr_scheduler", None)
    for node in ("regularizer", "distill"):  # none: nothing to record
        if not cfg.get(node):
            used.pop(node, None)
    distributed = used.pop("distributed", {}) or {}
    if distributed.get("sync_batchnorm"):  # timeout and backend change nothing that is learned
        used["distributed"] = {"sync_batchnorm": True}
    deploy = used.get("deploy") or {}
    if deploy.get("quantize") == "none":  # calibration only matters to int8
        deploy.pop("calibration_batches", None)
    if deploy.get("enabled") is False:
        used["deploy"] = {"enabled": False}
    return used
