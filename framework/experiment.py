"""Wires a composed config into objects and runs them: the one place that knows every part.

Order matters: everything that can be checked without data is checked first (config values,
files, model, pruning patterns, BN-fold tracing, the tracking store), so a typo fails in a second;
only then is the dataset read and training started.
"""

from __future__ import annotations

import logging
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from framework.config import project_root, validate
from framework.errors import ConfigError
from framework.training import CheckpointHook, Trainer, load_checkpoint, seed_everything
from framework.tracking.metrics_file import MetricsFileHook
from framework.training.log_hook import EpochLogHook
from framework.training.optim import build_lr_scheduler, build_optimizer
from framework.training.run_lock import lock_run_dir

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """Where a run writes and how it was asked for (from Hydra, or given by a test)."""

    run_dir: Path
    overrides: List[str] = field(default_factory=list)
    hydra_dir: Optional[Path] = None  # the .hydra/ folder with the composed config


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked KILLED and its checkpoint kept."""


def run(cfg: DictConfig, context: RunContext) -> Dict[str, float]:
    """Train (and prune) as ``cfg`` says; returns the last epoch's metrics."""
    validate(cfg)
    run_dir = context.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    with lock_run_dir(run_dir):  # one run per run dir; released however the run ends
        return _run_in_locked_dir(cfg, context)


def _run_in_locked_dir(cfg: DictConfig, context: RunContext) -> Dict[str, float]:
    run_dir = context.run_dir

    from framework.data import build_loaders, check_dataset_available, dataset_signature

    d = cfg.dataset
    check_dataset_available(d.name, root=d.root, download=d.download)
    num_classes, input_shape = dataset_signature(
        d.name, root=d.root, shape=tuple(d.shape), num_classes=d.num_classes, image_size=d.image_size
    )
    if cfg.model.pretrained:
        from framework.models import check_pretrained_file

        check_pretrained_file(cfg.model.pretrained)
    resume_path = _checkpoint_to_resume(cfg, context)
    checkpoint = load_checkpoint(resume_path) if resume_path is not None else None
    device = _resolve_device(cfg.device)
    seed_everything(cfg.seed)

    model = _build_model(cfg, num_classes, input_shape)
    model.to(device)
    pruning_hook = _build_pruning_hook(cfg, model, run_dir, input_shape)
    optimizer = build_optimizer(
        model.parameters(),
        cfg.optimizer.name,
        lr=cfg.optimizer.lr,
        momentum=cfg.optimizer.momentum,
        nesterov=cfg.optimizer.nesterov,
        weight_decay=cfg.optimizer.weight_decay,
        betas=list(cfg.optimizer.betas),
    )
    lr_scheduler = build_lr_scheduler(
        optimizer,
        cfg.lr_scheduler.name,
        epochs=cfg.epochs,
        min_lr=cfg.lr_scheduler.min_lr,
        step_size=cfg.lr_scheduler.step_size,
        milestones=list(cfg.lr_scheduler.milestones),
        gamma=cfg.lr_scheduler.gamma,
    )
    tracker = _build_tracker(cfg, context, pruning_hook, input_shape)
    if tracker is not None:
        tracker.connect()  # an unreachable store fails here, before any data is read

    # -- from here on, data is read ----------------------------------------------------------
    bundle = _build_data(cfg)
    train_loader, val_loader = build_loaders(
        bundle, batch_size=cfg.dataset.batch_size, num_workers=cfg.dataset.num_workers, seed=cfg.seed
    )
    hooks: List[Any] = [h for h in (pruning_hook, EpochLogHook(), MetricsFileHook(run_dir), tracker) if h is not None]
    hooks.append(CheckpointHook(run_dir / "checkpoints"))
    trainer = Trainer(
        model,
        optimizer,
        train_loader,
        val_loader,
        epochs=cfg.epochs,
        device=device,
        lr_scheduler=lr_scheduler,
        hooks=hooks,
        progress=cfg.progress,
        loader_generator=getattr(train_loader, "generator", None),
    )
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint)
        log.info("resumed at epoch %d from %s", trainer.start_epoch, resume_path)

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


# -- parts -----------------------------------------------------------------------------------


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available here; allowed: auto | cpu")
    return torch.device(name)


def _build_model(cfg: DictConfig, num_classes: int, input_shape: Sequence[int]) -> torch.nn.Module:
    from framework.models import build_model, load_pretrained

    torchvision = cfg.model.arch == "torchvision"
    model = build_model(
        "torchvision" if torchvision else cfg.model.name,
        torchvision_name=cfg.model.name if torchvision else None,
        num_classes=num_classes,
        input_shape=tuple(input_shape),
        shortcut=cfg.model.shortcut,
    )
    if cfg.model.pretrained:
        load_pretrained(model, cfg.model.pretrained)
    return model


def _build_pruning_hook(cfg: DictConfig, model, run_dir: Path, input_shape):
    if cfg.pruner.name == "none":
        if cfg.fold_batchnorm:
            log.warning("fold_batchnorm=true has no effect with pruner=none")
        return None
    from framework.pruning import build_pruner
    from framework.pruning.hook import PruningHook
    from framework.pruning.selection import io_layer_weights

    p, s = cfg.pruner, cfg.schedule
    exclude = list(p.exclude)
    first, last = io_layer_weights(model)
    # Removing the input layer's channels drops image planes; removing the output layer's
    # filters drops classes: by default each structured pruner leaves its end of the model alone.
    skip_input = p.skip_input_layer if p.skip_input_layer is not None else p.structure == "channel"
    skip_output = p.skip_output_layer if p.skip_output_layer is not None else p.structure == "filter"
    if skip_input and first:
        exclude.append(first)
    if skip_output and last:
        exclude.append(last)
    pruner = build_pruner(
        model,
        method=p.name,
        structure=p.structure,
        criterion=p.criterion,
        initial_sparsity=p.initial_sparsity,
        final_sparsity=p.final_sparsity,
        starting_epoch=s.starting_epoch,
        ending_epoch=s.ending_epoch,
        frequency=s.frequency,
        weights=list(p.weights) or None,
        exclude=exclude,
        levels=dict(p.levels) or None,
        threshold=p.threshold,
        sensitivity=p.sensitivity,
        fold_batchnorm=cfg.fold_batchnorm,
        mask_gradients=p.mask_gradients,
        seed=p.seed,
        step_frequency=s.step_frequency,
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


def _build_tracker(cfg: DictConfig, context: RunContext, pruning_hook, input_shape):
    if not cfg.tracking.enabled:
        return None
    from framework.tracking.mlflow_hook import MLflowHook
    from framework.tracking.params import flatten_config, git_commit, run_name

    params = flatten_config(cfg)
    tags = {
        "hydra.overrides": " ".join(context.overrides) or "(none)",
        "hydra.output_dir": str(context.run_dir),
        "git.commit": git_commit(project_root()) or "unknown",
    }
    if pruning_hook is not None and pruning_hook.fold_pairs is not None:
        tags["fold_batchnorm.folded_layers"] = str(len(pruning_hook.fold_pairs))
    artifacts = [(context.run_dir / "checkpoints" / "last.pt", "checkpoints"),
                 (context.run_dir / "metrics.jsonl", "")]
    if context.hydra_dir is not None:
        artifacts.append((context.hydra_dir, "hydra"))
    if pruning_hook is not None:
        artifacts.append((context.run_dir / "pruning", "pruning"))

    def model_example():
        return torch.zeros((1, *input_shape)).numpy()

    return MLflowHook(
        uri=cfg.tracking.uri,
        experiment=cfg.tracking.experiment,
        artifact_location=cfg.tracking.artifact_location,
        run_dir=context.run_dir,
        params=params,
        tags=tags,
        run_name=run_name(context.overrides),
        artifacts=artifacts,
        log_model=cfg.tracking.log_model,
        model_example=model_example,
    )


def _build_data(cfg: DictConfig):
    from framework.data import build_datasets

    d = cfg.dataset
    return build_datasets(
        d.name,
        root=d.root,
        download=d.download,
        seed=cfg.seed,
        val_fraction=d.val_fraction,
        augment=d.augment,
        image_size=d.image_size,
        shape=tuple(d.shape),
        num_classes=d.num_classes,
        train_size=d.train_size,
        val_size=d.val_size,
    )


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
