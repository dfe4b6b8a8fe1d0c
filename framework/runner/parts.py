"""Every part of a run, built and checked before any data is read: :func:`build_parts`.

Order matters: everything that can be checked without data is checked first (files, model,
pruning patterns, BN-fold tracing, the tracking store), so a typo fails in a second; only then
does the task read the dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from framework.components import build_component
from framework.config import pruning_window
from framework.errors import ConfigError, short_reason
from framework.process.distributed import SINGLE, DistContext, resolve_device
from framework.pruning.budget.latency_table import LatencyTable
from framework.pruning.scores.bn_fold import pairs_report
from framework.run_context import RunContext
from framework.runner.budget_table import budget_cost_table, latency_measurer, run_latency_table
from framework.runner.card import card_dir, set_target_from_ratio
from framework.runner.first_batch import check_output
from framework.runner.methods import KnowledgeDistillation
from framework.tracking.description import RunDescription
from framework.tracking.group import Trackers
from framework.tracking.metrics_file import MetricsFileTracker
from framework.tracking.trackers import as_trackers
from framework.training.rng import seed_everything

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """What every task starts from, built and checked before any data is read."""

    context: RunContext
    data_source: Any
    num_classes: int
    input_shape: tuple[int, ...]
    device: torch.device
    model: torch.nn.Module
    pruner: Any | None  # the pruning engine; None for pruner.method=none
    fold_pairs: list[dict[str, str]] | None  # fold_batchnorm: the layers folded (None: not folding)
    trackers: Trackers  # rank 0's, the metrics file first; none on ranks > 0
    changes: list[str] = field(default_factory=list)  # resume_changed=allow: what changed since the checkpoint
    distillation: KnowledgeDistillation | None = None  # distill=kd (training only)
    regularizer: Any | None = None  # regularizer=... (training only)
    latency_table: LatencyTable | None = None  # the table the thinned model's latency is predicted by
    # a causal LM's run (framework.runner.lm_parts.LanguageModelPart): its tokenizer, the zeros held fixed
    language: Any | None = None


def build_parts(
    cfg: DictConfig,
    context: RunContext,
    ddp: DistContext = SINGLE,
    *,
    schedule_window: tuple[int, int, int, int | None] | None = None,
    changes: Sequence[str] = (),
) -> Parts:
    """Data source (described, unread), model with its pretrained weights on its device, the pruner,
    the training methods' components, and the trackers of rank 0, connected to their store.

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
    if cfg.task == "train":
        check_training_step(cfg, device)
    seed_everything(cfg.seed)
    model = build_model(cfg, num_classes, input_shape)
    model.to(device)
    set_target_from_ratio(cfg, model, input_shape, card_dir(cfg, context))  # a card job: ratio -> final_sparsity
    cost_table = budget_cost_table(cfg, model, input_shape, context if ddp.is_main else None)
    measure = latency_measurer(cfg, model, input_shape, cost_table, ddp)
    pruner, fold_pairs = build_pruner_part(cfg, model, input_shape, schedule_window, cost_table, measure)
    thins = pruner is not None and pruner.thin_when != "never"
    latency_table = run_latency_table(cfg, model, input_shape, cost_table, thins) if ddp.is_main else None
    training = cfg.task == "train"
    distillation = build_component("distill", cfg.distill) if training and cfg.get("distill") else None
    regularizer = build_component("regularizer", cfg.regularizer) if training and cfg.get("regularizer") else None
    description = RunDescription(
        context,
        task=cfg.task,
        changes=changes,
        fold_pairs=fold_pairs if training else None,
        input_shape=input_shape,
        params=params_in_use(cfg),
        world_size=ddp.world_size,
        tags=list(cfg.tags),
    )
    # Ranks > 0 train, prune and thin like rank 0, but track nothing.
    trackers = build_trackers(cfg, description) if ddp.is_main else Trackers([])
    return Parts(
        context,
        data_source,
        num_classes,
        input_shape,
        device,
        model,
        pruner,
        fold_pairs,
        trackers,
        list(changes),
        distillation,
        regularizer,
        latency_table,
    )


def check_training_step(cfg: DictConfig, device: torch.device) -> None:
    """The precision and torch.compile asked for, against the device the run got (device=auto)."""
    from framework.training.fast_path import compile_problem
    from framework.training.precision import precision_problem

    problem = precision_problem(str(cfg.precision), device) or (compile_problem(device) if cfg.compile else None)
    if problem:
        raise ConfigError(problem)


def build_trackers(cfg: DictConfig, description: RunDescription) -> Trackers:
    """The metrics file, then the ``tracking`` component's trackers (connected: an unreachable
    store fails here, before any data is read)."""
    configured = as_trackers(build_component("tracking", cfg.tracking, run=description), cfg.tracking._target_)
    return Trackers([MetricsFileTracker(description.context, planned_steps(cfg)), *configured])


def planned_steps(cfg: DictConfig) -> int:
    """How many steps the task logs: epochs; the dense model and each level; one evaluation."""
    if cfg.task == "sensitivity":
        return 1 + len(cfg.sensitivity.levels)
    if cfg.task == "eval":
        return 1
    if cfg.task == "oneshot":  # the dense model, the pruned one
        return 2
    return int(cfg.epochs)


def build_data_source(cfg: DictConfig):
    """The dataset component, described (classes, input shape) and its files checked, unread; a
    dataset that takes ``weights_transforms`` gets the preprocessing the model's weights declare."""
    from framework.data import as_data_source
    from framework.models import weights_transforms

    declared = weights_transforms(cfg.model)
    built = build_component("dataset", cfg.dataset, **({"weights_transforms": declared} if declared else {}))
    source = as_data_source(built, cfg.dataset._target_)
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


def build_pruner_part(
    cfg: DictConfig,
    model: torch.nn.Module,
    input_shape: Sequence[int],
    schedule_window=None,
    cost_table=None,
    cost_measure=None,
) -> tuple[Any | None, list[dict[str, str]] | None]:
    """The pruner (built here, once) and, with fold_batchnorm, the layers it folds; (None, None)
    for method=none. ``cost_table``: what ``pruner.budget`` counts (:mod:`.budget_table`);
    ``cost_measure``: the thinned model's measurement a latency allocation is checked by."""
    if cfg.pruner.method == "none":
        if cfg.fold_batchnorm:
            log.warning("fold_batchnorm=true has no effect with pruner.method=none")
        return None, None
    if schedule_window is None:
        starting_epoch, ending_epoch = pruning_window(cfg.schedule, cfg.epochs)
        schedule_window = (starting_epoch, ending_epoch, cfg.schedule.frequency, cfg.schedule.step_frequency)
    starting_epoch, ending_epoch, frequency, step_frequency = schedule_window
    # a function that returns the table: Hydra would turn the dataclass itself into a config
    objects = {"cost_table": lambda: cost_table} if cost_table is not None else {}
    if cost_measure is not None:
        objects["cost_measure"] = cost_measure
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
        **objects,
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
    return pruner, fold_pairs


def resolved(node: Any) -> dict[str, Any]:
    """A config node (a mapping) as plain, resolved data; {} for an empty or null node."""
    container = OmegaConf.to_container(node, resolve=True) if node is not None else None
    return {str(key): value for key, value in container.items()} if isinstance(container, dict) else {}


def recorded_params(cfg: DictConfig) -> dict[str, str]:
    """What a checkpoint records of its config: the params, and the store its tracker logs to."""
    from framework.tracking.params import flatten_config

    return {**flatten_config(params_in_use(cfg)), "tracking.uri": str(cfg.tracking.get("uri"))}


def params_in_use(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without what this run does not use: the schedule of a dense run, an
    empty lr_scheduler node, and the settings that say where results go rather than what ran."""
    used = resolved(cfg)
    for key in (
        "tracking",
        "progress",
        "resume",
        "resume_changed",
        "optimized_metric",
        "paths",
        "tags",
        "print_config",
    ):
        used.pop(key, None)
    for key in ("limit_train_batches", "limit_val_batches"):  # params only when set (debug presets)
        if used["loader"].get(key) is None:
            used["loader"].pop(key, None)
    if not used.get("profile_steps"):
        used.pop("profile_steps", None)
    # the training step's defaults are not params: runs from before these keys compare equal
    for key, default in (("precision", "32"), ("compile", False), ("channels_last", False)):
        if str(used.get(key)) == str(default):
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
    for node in ("regularizer", "distill"):  # none: nothing to record
        if not cfg.get(node):
            used.pop(node, None)
    if (used.get("early_stopping") or {}).get("patience") is None:  # off: every epoch trains
        used.pop("early_stopping", None)
    distributed = used.pop("distributed", {}) or {}
    if distributed.get("sync_batchnorm"):  # timeout and backend change nothing that is learned
        used["distributed"] = {"sync_batchnorm": True}
    deploy = used.get("deploy") or {}
    if deploy.get("quantize") == "none":  # calibration and the accepted drop only matter to int8
        deploy.pop("int8_calibration_batches", None)
        deploy.pop("max_int8_drop", None)
    if not (used.get("card") or {}).get("enabled"):  # a run outside a report card
        used.pop("card", None)
    if not deploy.get("required"):  # what a failing deploy step does to the run, not what it learns
        deploy.pop("required", None)
    if deploy.get("enabled") is False:
        used["deploy"] = {"enabled": False}
    return used
