"""Which of a run's files its trackers keep, by task (each in the tracker's folder of the same
name as the run folder's): the trackers log those that exist when the run ends."""

from __future__ import annotations

from framework.run_context import (
    CHECKPOINTS,
    DEPLOY,
    DERIVED_CONF,
    LANGUAGE_MODEL,
    PRUNING,
    SENSITIVITY,
    THINNED,
    RunContext,
)
from framework.tracking.tracker import RunFile

HYDRA = "hydra"  # the composed config and overrides (.hydra/), under this name


def training_files(context: RunContext, pruned: bool, language: bool = False) -> list[RunFile]:
    """The last checkpoint, the metrics, the deployable model's variants table, the config; a
    pruned run's reports and thinned model; a language model's save_pretrained folder."""
    from framework.deploy.variants import TABLE

    files = [
        RunFile(context.last_checkpoint, CHECKPOINTS),
        RunFile(context.metrics_file),
        RunFile(context.deploy / TABLE, DEPLOY),
        *_config(context),
    ]
    if pruned:
        files += [RunFile(context.pruning, PRUNING), RunFile(context.thinned, THINNED)]
    if language:
        files.append(RunFile(context.language_model, LANGUAGE_MODEL))
    return files


def sensitivity_files(context: RunContext) -> list[RunFile]:
    """The analysis's tables and curves, and the derived pruner option."""
    return [RunFile(context.sensitivity, SENSITIVITY), RunFile(context.derived_conf, DERIVED_CONF)]


def eval_files(context: RunContext) -> list[RunFile]:
    """An evaluation makes nothing new to keep but its metrics and config."""
    return [RunFile(context.metrics_file), *_config(context)]


def oneshot_files(context: RunContext) -> list[RunFile]:
    """The pruned language model's save_pretrained folder (what a deployment loads), the
    per-matrix table, the metrics and the config."""
    return [
        RunFile(context.language_model, LANGUAGE_MODEL),
        RunFile(context.pruning, PRUNING),
        RunFile(context.metrics_file),
        *_config(context),
    ]


def _config(context: RunContext) -> list[RunFile]:
    return [RunFile(context.hydra_dir, HYDRA)] if context.hydra_dir is not None else []
