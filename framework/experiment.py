"""Wires a composed config into objects and runs them: the one place that knows every part.

Order matters: everything that can be checked without data is checked first (config values,
files, model, pruning patterns, BN-fold tracing, the tracking store), so a typo fails in a second;
only then is the dataset read and training started.
"""

from __future__ import annotations

import logging
import signal
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from framework.components import build_component
from framework.config import project_root, pruning_window, validate
from framework.data import build_loaders, load_splits
from framework.models.pretrained import thinning_recipe
from framework.distributed import resolve_device
from framework.resume_guard import ConfigRecordHook, apply_scheduler_arguments, config_changes
from framework.errors import ConfigError, short_reason
from framework.training import CheckpointHook, Trainer, load_checkpoint, seed_everything
from framework.tracking.metrics_file import MetricsFileHook
from framework.training.log_hook import EpochLogHook
from framework.training.run_lock import lock_run_dir

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """Where a run writes and how it was asked for (from Hydra, or given by a test)."""

    run_dir: Path
    overrides: List[str] = field(default_factory=list)
    hydra_dir: Optional[Path] = None  # the .hydra/ folder with the composed config
    # a job of a multirun: its number, the keys its sweep varies and the sweep's MLflow parent run
    job_num: Optional[int] = None
    swept_keys: List[str] = field(default_factory=list)
    parent_run_id: Optional[str] = None


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked KILLED and its checkpoint kept."""


def run(cfg: DictConfig, context: RunContext) -> Dict[str, float]:
    """Train (and prune) as ``cfg`` says; returns the last epoch's metrics.

    Under ``torchrun`` every process calls this; they form one run (see
    :mod:`framework.distributed`): rank 0's run dir, rank 0's files and MLflow run.
    """
    validate(cfg)
    from framework.distributed import agree_or_raise, init_distributed, shutdown_distributed

    ddp = init_distributed(cfg.distributed.timeout_s, cfg.distributed.backend)
    try:
        context = _shared_run_dir(context, ddp)
        lock, resume_path, error = None, None, None
        try:
            context.run_dir.mkdir(parents=True, exist_ok=True)
            if ddp.is_main:  # one run per run dir; released however the run ends
                lock = lock_run_dir(context.run_dir)
                resume_path = _checkpoint_to_resume(cfg, context)
        except Exception as failure:
            error = failure
        agree_or_raise(error, ddp)
        resume_path = _broadcast(resume_path, ddp)  # every rank resumes rank 0's choice
        with lock if lock is not None else nullcontext():
            return _run_in_locked_dir(cfg, context, ddp, resume_path)
    finally:
        shutdown_distributed()


def _broadcast(value, ddp):
    from framework.distributed import broadcast_object

    return broadcast_object(value, ddp)


def _shared_run_dir(context: RunContext, ddp) -> RunContext:
    """Every rank takes rank 0's run dir (Hydra's timestamped dirs may differ by a second); the
    empty dir Hydra made for another rank is removed."""
    if not ddp.enabled:
        return context
    shared = Path(_broadcast(str(context.run_dir), ddp))
    if shared != context.run_dir:
        try:
            context.run_dir.rmdir()  # only if empty: run.py gives ranks > 0 no .hydra/ nor log
        except OSError:
            pass
        context = replace(context, run_dir=shared, hydra_dir=None)
    return context


def _run_in_locked_dir(cfg: DictConfig, context: RunContext, ddp=None, resume_path: Optional[Path] = None) -> Dict[str, float]:
    from framework.distributed import SINGLE, agree_or_raise

    ddp = ddp or SINGLE
    run_dir = context.run_dir
    if cfg.task == "sensitivity":
        if ddp.enabled:
            raise ConfigError("task=sensitivity runs in one process; allowed: python run.py (sensitivity.workers=N forks workers)")
        return _run_sensitivity(cfg, context)
    error = None
    try:  # no collective inside: a rank that fails here must reach agree_or_raise below
        trainer, resume_path, changes, lr_scheduler = _set_up(cfg, context, ddp, resume_path)
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
    return final


def _run_sensitivity(cfg: DictConfig, context: RunContext) -> Dict[str, float]:
    """``task=sensitivity``: the same checks and parts as training (no optimizer), then the
    analysis of :mod:`framework.sensitivity_task` on the validation split."""
    from framework.distributed import SINGLE
    from framework.sensitivity_task import analyse

    data_source = _build_data_source(cfg)
    num_classes, input_shape = int(data_source.num_classes), tuple(int(s) for s in data_source.input_shape)
    if cfg.pretrained:
        from framework.models import check_pretrained_file

        check_pretrained_file(cfg.pretrained)
    else:
        log.warning("task=sensitivity without pretrained=...: analysing an untrained model")
    device = resolve_device(cfg.device, SINGLE)
    seed_everything(cfg.seed)
    model = _build_model(cfg, num_classes, input_shape)
    model.to(device)
    pruner = build_component(  # one-shot: the analysis sets each unit's level itself
        "pruner", cfg.pruner, model=model, starting_epoch=0, ending_epoch=1, frequency=1, step_frequency=None,
        fold_batchnorm=cfg.fold_batchnorm, input_shape=tuple(input_shape),
    )
    tracker = _build_tracker(cfg, context, None, input_shape, [])
    if tracker is not None:
        tracker.connect()
    bundle = load_splits(data_source, cfg.dataset._target_)
    # forked analysis workers evaluate in their own process: no loader workers below them
    workers = 0 if cfg.sensitivity.workers > 1 else cfg.loader.num_workers
    _, val_loader = build_loaders(bundle, batch_size=cfg.loader.batch_size, num_workers=workers, seed=cfg.seed)
    return analyse(cfg, context.run_dir, context.overrides, model, pruner, val_loader, device, input_shape, tracker)


def _set_up(cfg: DictConfig, context: RunContext, ddp, resume_path: Optional[Path]):
    """Every part of the run, built and checked, data read, checkpoint loaded: the Trainer."""
    run_dir = context.run_dir
    # -- components: checked against their targets' signatures and built, no data read yet --
    data_source = _build_data_source(cfg)
    num_classes, input_shape = int(data_source.num_classes), tuple(int(s) for s in data_source.input_shape)
    if cfg.pretrained:
        from framework.models import check_pretrained_file

        check_pretrained_file(cfg.pretrained)
    checkpoint = load_checkpoint(resume_path) if resume_path is not None else None
    record = ConfigRecordHook(recorded_params(cfg))
    changes = (
        config_changes(checkpoint, record.params, allow=cfg.resume_changed == "allow") if checkpoint is not None else []
    )
    device = resolve_device(cfg.device, ddp)
    if cfg.distributed.sync_batchnorm and device.type != "cuda":
        raise ConfigError(f"distributed.sync_batchnorm=true needs CUDA; this run is on {device.type}; allowed: false")
    seed_everything(cfg.seed)

    model = _build_model(cfg, num_classes, input_shape)
    model.to(device)
    pruning_hook = _build_pruning_hook(cfg, model, run_dir, input_shape)
    thinning_hook = _build_thinning_hook(cfg, pruning_hook, run_dir, input_shape)
    mask_sync = None
    if ddp.enabled and pruning_hook is not None:
        from framework.training.ddp import MaskSync

        mask_sync = MaskSync(pruning_hook.pruner, ddp, run_dir if ddp.is_main else None)
        pruning_hook.on_masks_updated = mask_sync
        if not ddp.is_main:  # only rank 0 writes the reports and the thinned model
            pruning_hook.report_dir = None
            if thinning_hook is not None:
                thinning_hook.writes_files = False
    recipe = thinning_recipe(checkpoint) if checkpoint is not None else None
    if recipe is not None:  # the checkpoint holds the thinned model: rebuild its architecture
        from framework.pruning.thinning import apply_recipe

        apply_recipe(model, recipe)
        model.to(device)
        pruning_hook.freeze()
    optimizer = build_component("optimizer", cfg.optimizer, params=model.parameters())
    lr_scheduler = (
        build_component("lr_scheduler", cfg.lr_scheduler, optimizer=optimizer) if cfg.lr_scheduler else None
    )
    tracker = _build_tracker(cfg, context, pruning_hook, input_shape, changes, ddp) if ddp.is_main else None
    if tracker is not None:
        tracker.connect()  # an unreachable store fails here, before any data is read

    # -- from here on, data is read ----------------------------------------------------------
    bundle = load_splits(data_source, cfg.dataset._target_)
    if tracker is not None:
        tracker.preprocessing = bundle.preprocessing  # logged beside the model
    train_loader, val_loader = build_loaders(
        bundle, batch_size=cfg.loader.batch_size, num_workers=cfg.loader.num_workers, seed=cfg.seed,
        rank=ddp.rank, world_size=ddp.world_size,
    )
    # Ranks > 0 train, prune and thin like rank 0, but write nothing: no log, metrics, MLflow or checkpoint.
    writers = (EpochLogHook(), MetricsFileHook(run_dir), tracker) if ddp.is_main else ()
    deploy_hook = _build_deploy_hook(cfg, pruning_hook, thinning_hook, run_dir, input_shape, writes_files=ddp.is_main)
    hooks: List[Any] = [h for h in (record, pruning_hook, mask_sync, thinning_hook, deploy_hook, *writers) if h is not None]
    if ddp.is_main:
        hooks.append(CheckpointHook(run_dir / "checkpoints"))
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
        if changes:  # resume_changed=allow: the pruner's method may be new; its masks still apply
            checkpoint.get("hooks", {}).get("pruning", {}).pop("method", None)
            checkpoint.get("hooks", {}).get("pruning", {}).pop("structure", None)
        trainer.load_state_dict(checkpoint)
        if changes:
            apply_scheduler_arguments(lr_scheduler, OmegaConf.to_container(cfg.lr_scheduler, resolve=True) or {})
            log.warning("resumed with a changed config: %s", "; ".join(changes))
        log.info("resumed at epoch %d from %s", trainer.start_epoch, resume_path)
    return trainer, resume_path, changes, lr_scheduler


# -- parts -----------------------------------------------------------------------------------


def _build_data_source(cfg: DictConfig):
    """The dataset component, described (classes, input shape) and its files checked, unread."""
    from framework.data import as_data_source

    source = as_data_source(build_component("dataset", cfg.dataset), cfg.dataset._target_)
    check = getattr(source, "check", None)
    if callable(check):
        check()
    return source


def _build_model(cfg: DictConfig, num_classes: int, input_shape: Sequence[int]) -> torch.nn.Module:
    """The model component; the dataset supplies ``num_classes``, ``in_channels`` and
    ``input_shape`` to a target whose signature takes them."""
    model = build_component(
        "model", cfg.model, num_classes=num_classes, in_channels=input_shape[0], input_shape=tuple(input_shape)
    )
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model._target_={cfg.model._target_} returned a {type(model).__name__}; allowed: a torch.nn.Module")
    if cfg.pretrained:
        from framework.models import load_pretrained

        load_pretrained(model, cfg.pretrained)
    named = f" (model.name={cfg.model.name})" if "name" in cfg.model else ""
    _check_forward(model, f"model._target_={cfg.model._target_}{named}", input_shape)
    return model


@torch.no_grad()
def _check_forward(model: torch.nn.Module, described: str, input_shape: Sequence[int]) -> None:
    """One forward pass on a dummy batch, so that a model that cannot take the dataset's inputs
    (alexnet on 32x32) fails now with one line instead of at the first training step."""
    was_training = model.training
    model.eval()  # no BatchNorm statistics move, no dropout draws from the RNG
    try:
        model(torch.zeros(2, *input_shape))
    except Exception as error:
        raise ConfigError(
            f"{described} cannot take the dataset's inputs of shape {tuple(input_shape)}: "
            f"{short_reason(error)}; choose a model for this input size or another dataset"
        ) from None
    finally:
        model.train(was_training)


def _build_pruning_hook(cfg: DictConfig, model, run_dir: Path, input_shape):
    if cfg.pruner.method == "none":
        if cfg.fold_batchnorm:
            log.warning("fold_batchnorm=true has no effect with pruner.method=none")
        return None
    from framework.pruning_hook import PruningHook

    starting_epoch, ending_epoch = pruning_window(cfg.schedule, cfg.epochs)
    pruner = build_component(
        "pruner",
        cfg.pruner,
        model=model,
        starting_epoch=starting_epoch,
        ending_epoch=ending_epoch,
        frequency=cfg.schedule.frequency,
        step_frequency=cfg.schedule.step_frequency,
        fold_batchnorm=cfg.fold_batchnorm,
        input_shape=tuple(input_shape),
    )
    fold_pairs = None
    if cfg.fold_batchnorm:
        fold_pairs = pruner.fold_pairs_report()
        if not fold_pairs:
            log.warning("fold_batchnorm=true but no layer of %s feeds a BatchNorm directly: nothing is folded",
                        type(model).__name__)
        else:
            log.info("fold_batchnorm: %d layers folded", len(fold_pairs))
    return PruningHook(pruner, report_dir=run_dir / "pruning", input_shape=input_shape, fold_pairs=fold_pairs)


def _build_thinning_hook(cfg: DictConfig, pruning_hook, run_dir: Path, input_shape):
    """The hook that makes the model smaller, when the pruner says so (``pruner.thin``)."""
    if pruning_hook is None or pruning_hook.pruner.thin_when == "never":
        return None
    from framework.thinning_hook import ThinningHook

    return ThinningHook(
        pruning_hook.pruner, pruning_hook, pruning_hook.pruner.thin_when, input_shape, run_dir / "thinned",
        batch_size=cfg.loader.batch_size,
    )


def _build_deploy_hook(cfg: DictConfig, pruning_hook, thinning_hook, run_dir: Path, input_shape, writes_files: bool):
    """The deployable model at the end of the run (``deploy.*``); with N:M, its pattern check."""
    nm = pruning_hook is not None and getattr(pruning_hook.pruner, "nm", None) is not None
    if not cfg.deploy.enabled and not nm:
        return None
    from framework.deploy_hook import DeployHook

    return DeployHook(
        cfg.deploy.quantize, cfg.deploy.calibration_batches, input_shape, run_dir / "deploy", cfg.loader.batch_size,
        thinning_hook=thinning_hook, pruner=pruning_hook.pruner if pruning_hook is not None else None,
        builds=cfg.deploy.enabled, writes_files=writes_files,
    )


def _build_tracker(cfg: DictConfig, context: RunContext, pruning_hook, input_shape, changes: List[str], ddp=None):
    if not cfg.tracking.enabled:
        return None
    from framework.tracking.mlflow_hook import MLflowHook
    from framework.tracking.params import flatten_config, git_commit, run_name

    params = flatten_config(params_in_use(cfg))
    tags = {
        "hydra.overrides": " ".join(context.overrides) or "(none)",
        "hydra.output_dir": str(context.run_dir),
        "git.commit": git_commit(project_root()) or "unknown",
    }
    if ddp is not None and ddp.enabled:
        tags["distributed.world_size"] = str(ddp.world_size)
    if context.job_num is not None:
        tags["hydra.job.num"] = str(context.job_num)
        tags["sweep.dir"] = str(context.run_dir.parent)
    if context.parent_run_id:
        tags["mlflow.parentRunId"] = context.parent_run_id  # the MLflow UI nests the run under it
    if changes:
        tags["resume.changed"] = "; ".join(changes)[:5000]
    if pruning_hook is not None and pruning_hook.fold_pairs is not None:
        tags["fold_batchnorm.folded_layers"] = str(len(pruning_hook.fold_pairs))
    artifacts = [(context.run_dir / "checkpoints" / "last.pt", "checkpoints"),
                 (context.run_dir / "metrics.jsonl", ""),
                 (context.run_dir / "deploy" / "variants.csv", "deploy")]
    if context.hydra_dir is not None:
        artifacts.append((context.hydra_dir, "hydra"))
    if pruning_hook is not None:
        artifacts.append((context.run_dir / "pruning", "pruning"))
        artifacts.append((context.run_dir / "thinned", "thinned"))

    return MLflowHook(
        uri=cfg.tracking.uri,
        experiment=cfg.tracking.experiment,
        artifact_location=cfg.tracking.artifact_location,
        run_dir=context.run_dir,
        params=params,
        tags=tags,
        run_name=run_name(context.overrides, swept=context.swept_keys),
        artifacts=artifacts,
        log_model=cfg.tracking.log_model,
        input_shape=input_shape,
    )


def recorded_params(cfg: DictConfig) -> Dict[str, str]:
    """What a checkpoint records of its config: the params, and the store its MLflow run is in."""
    from framework.tracking.params import flatten_config

    return {**flatten_config(params_in_use(cfg)), "tracking.uri": str(cfg.tracking.uri)}


def params_in_use(cfg: DictConfig) -> Dict[str, Any]:
    """The resolved config without what this run does not use: the schedule of a dense run, an
    empty lr_scheduler node, and the settings that say where results go rather than what ran."""
    used = OmegaConf.to_container(cfg, resolve=True)
    for key in ("tracking", "progress", "resume", "resume_changed", "optimized_metric"):
        used.pop(key, None)
    if cfg.get("task", "train") == "train":  # the analysis settings only matter to task=sensitivity
        used.pop("task", None)
        used.pop("sensitivity", None)
    if cfg.pruner.method == "none":
        used.pop("schedule", None)
    else:  # the epoch the schedule really ends at, not the null that means "half of training"
        used["schedule"]["ending_epoch"] = pruning_window(cfg.schedule, cfg.epochs)[1]
    if not cfg.lr_scheduler:
        used.pop("lr_scheduler", None)
    distributed = used.pop("distributed", {}) or {}
    if distributed.get("sync_batchnorm"):  # timeout and backend change nothing that is learned
        used["distributed"] = {"sync_batchnorm": True}
    return used


# -- resume -----------------------------------------------------------------------------------


def _checkpoint_to_resume(cfg: DictConfig, context: RunContext) -> Optional[Path]:
    """The checkpoint ``resume`` asks for, or None to start from scratch."""
    if cfg.resume is None:
        return None
    if cfg.resume != "auto":
        return Path(cfg.resume)
    path = find_resumable_checkpoint(context)
    if path is None:
        log.info("resume=auto: no earlier checkpoint of this run found; starting from scratch")
    return path


def find_resumable_checkpoint(context: RunContext) -> Optional[Path]:
    """This run dir's checkpoint, else the newest one of an earlier run with the same overrides.

    With an explicit ``hydra.run.dir`` the first case applies; with Hydra's timestamped dirs the
    second finds the run that the same command started before.
    """
    own = context.run_dir / "checkpoints" / "last.pt"
    if own.is_file():
        return own
    wanted = _without_resume(context.overrides)
    outputs = project_root() / "outputs"
    candidates = []
    for overrides_file in outputs.glob("**/.hydra/overrides.yaml"):
        run_dir = overrides_file.parent.parent
        checkpoint = run_dir / "checkpoints" / "last.pt"
        if run_dir == context.run_dir or not checkpoint.is_file():
            continue
        if _without_resume(OmegaConf.load(overrides_file)) == wanted:
            candidates.append(checkpoint)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def _without_resume(overrides) -> List[str]:
    return sorted(str(o) for o in overrides if not str(o).startswith(("resume=", "hydra.")))


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
