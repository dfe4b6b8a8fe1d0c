"""The ``tracking`` components (``conf/tracking/``): each one's ``_target_`` is called with its
own arguments and ``run`` (a :class:`RunDescription`), and gives the loop hooks that track the run.

A tracker of yours is a class or function of that shape in your own folder: a training-loop hook
(:class:`framework.training.Hook`), a list of them, or None. ``metrics.jsonl`` in the run dir is
written whatever the tracker.

MLflow only: a sweep's parent run (``framework.sweeps``), ``python -m framework.tracking.recover``
and the continuation of the same MLflow run on resume.
"""

from __future__ import annotations

from typing import Any

from framework.tracking.description import RunDescription

MLFLOW_TARGET = "framework.tracking.trackers.mlflow_tracking"
NO_TRACKING_TARGET = "framework.tracking.trackers.no_tracking"


def uses_mlflow(tracking: Any) -> bool:
    """Whether a ``tracking`` config node selects MLflow (``tracking=mlflow``)."""
    return tracking is not None and hasattr(tracking, "get") and tracking.get("_target_") == MLFLOW_TARGET


def as_hooks(built: Any) -> list[Any]:
    """What a tracking component gave, as a list of hooks."""
    if built is None:
        return []
    if isinstance(built, (list, tuple)):
        return list(built)
    return [built]


def no_tracking() -> list[Any]:
    """``tracking=none``: no tracker; metrics still go to ``metrics.jsonl``."""
    return []


def mlflow_tracking(
    uri: str,
    experiment: str = "secateurs",
    artifact_location: str | None = None,
    log_model: bool = True,
    *,
    run: RunDescription,
) -> list[Any]:
    """``tracking=mlflow``: one MLflow run per job, with the params, tags and artifacts below."""
    from framework.config import project_root
    from framework.tracking.mlflow_hook import MLflowHook
    from framework.tracking.params import flatten_config, git_commit, run_name

    tags = {
        "hydra.overrides": " ".join(run.overrides) or "(none)",
        "hydra.output_dir": str(run.run_dir),
        "git.commit": git_commit(project_root()) or "unknown",
    }
    for label in run.tags:  # the user's labels: "baseline" -> baseline=true, "owner:ana" -> owner=ana
        key, _, value = str(label).partition(":")
        tags[key.strip()] = value.strip() or "true"
    if run.world_size > 1:
        tags["distributed.world_size"] = str(run.world_size)
    if run.job_num is not None:
        tags["hydra.job.num"] = str(run.job_num)
        tags["sweep.dir"] = str(run.run_dir.parent)
    if run.parent_run_id:
        tags["mlflow.parentRunId"] = run.parent_run_id  # the MLflow UI nests the run under it
    if run.changes:
        tags["resume.changed"] = "; ".join(run.changes)[:5000]
    if run.fold_pairs is not None:
        tags["fold_batchnorm.folded_layers"] = str(len(run.fold_pairs))
    if run.task == "sensitivity":  # the analysis logs its tables and the derived pruner, no model
        artifacts = [(run.run_dir / "sensitivity", "sensitivity"), (run.run_dir / "conf", "conf")]
        log_model = False
    elif run.task == "eval":  # val metrics of a model a run made: nothing new to keep but its config
        artifacts = [(run.run_dir / "metrics.jsonl", "")]
        artifacts += [(run.hydra_dir, "hydra")] if run.hydra_dir is not None else []
        log_model = False
    else:
        artifacts = [
            (run.run_dir / "checkpoints" / "last.pt", "checkpoints"),
            (run.run_dir / "metrics.jsonl", ""),
            (run.run_dir / "deploy" / "variants.csv", "deploy"),
        ]  # the deployable model's variants, when built
        if run.hydra_dir is not None:
            artifacts.append((run.hydra_dir, "hydra"))
        if run.pruned:
            artifacts.append((run.run_dir / "pruning", "pruning"))
            artifacts.append((run.run_dir / "thinned", "thinned"))
    return [
        MLflowHook(
            uri=uri,
            experiment=experiment,
            artifact_location=artifact_location,
            run_dir=run.run_dir,
            params=flatten_config(run.params),
            tags=tags,
            run_name=run_name(run.overrides, swept=run.swept_keys),
            artifacts=artifacts,
            log_model=log_model,
            input_shape=run.input_shape,
            description=run,
        )
    ]
