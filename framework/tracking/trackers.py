"""The ``tracking`` components (``conf/tracking/``): each one's ``_target_`` is called with its
own arguments and ``run`` (a :class:`RunDescription`), and gives the run's trackers
(:class:`framework.tracking.tracker.Tracker`), connected to their store: an unreachable one fails
before any data is read.

A tracker of yours is a class or function of that shape in your own folder, giving a tracker, a
list of them, or None. ``metrics.jsonl`` in the run dir is written whatever the tracker.

MLflow only: a sweep's parent run (``framework.sweeps``), ``python -m framework.tracking.recover``
and the continuation of the same MLflow run on resume.
"""

from __future__ import annotations

from typing import Any

from framework.errors import ConfigError
from framework.tracking.description import RunDescription
from framework.tracking.tracker import METHODS, Tracker, missing_methods

MLFLOW_TARGET = "framework.tracking.trackers.mlflow_tracking"
NO_TRACKING_TARGET = "framework.tracking.trackers.no_tracking"


def uses_mlflow(tracking: Any) -> bool:
    """Whether a ``tracking`` config node selects MLflow (``tracking=mlflow``)."""
    return tracking is not None and hasattr(tracking, "get") and tracking.get("_target_") == MLFLOW_TARGET


def as_trackers(built: Any, target: str) -> list[Tracker]:
    """What the tracking component ``target`` gave, as a list of trackers; one line naming the
    methods missing from anything that is not one."""
    trackers = [] if built is None else list(built) if isinstance(built, (list, tuple)) else [built]
    for tracker in trackers:
        missing = missing_methods(tracker)
        if missing:
            raise ConfigError(
                f"tracking._target_={target} gave a {type(tracker).__name__} without {', '.join(missing)}; "
                f"allowed: a tracker with {', '.join(METHODS)} (framework.tracking.Tracker, see docs/library.md)"
            )
    return trackers


def no_tracking() -> list[Tracker]:
    """``tracking=none``: no tracker; metrics still go to ``metrics.jsonl``."""
    return []


def mlflow_tracking(
    uri: str,
    experiment: str = "secateurs",
    artifact_location: str | None = None,
    log_model: bool = True,
    *,
    run: RunDescription,
) -> list[Tracker]:
    """``tracking=mlflow``: one MLflow run per job, with the params and tags below, connected."""
    from framework.config import project_root
    from framework.tracking.mlflow_tracker import MLflowTracker
    from framework.tracking.params import flatten_config, git_commit, package_version, run_name

    context = run.context
    tags = {
        "hydra.overrides": " ".join(context.overrides) or "(none)",
        "hydra.output_dir": str(context.run_dir),
        "secateurs.version": package_version(),
    }
    commit = git_commit(project_root())
    if commit is not None:  # a checkout; an installed package has its version only
        tags["git.commit"] = commit
    for label in run.tags:  # the user's labels: "baseline" -> baseline=true, "owner:ana" -> owner=ana
        key, _, value = str(label).partition(":")
        tags[key.strip()] = value.strip() or "true"
    if run.world_size > 1:
        tags["distributed.world_size"] = str(run.world_size)
    if context.job_num is not None:
        tags["hydra.job.num"] = str(context.job_num)
        tags["sweep.dir"] = str(context.run_dir.parent)
    if context.parent_run_id:
        tags["mlflow.parentRunId"] = context.parent_run_id  # the MLflow UI nests the run under it
    if run.changes:
        tags["resume.changed"] = "; ".join(run.changes)[:5000]
    if run.fold_pairs is not None:
        tags["fold_batchnorm.folded_layers"] = str(len(run.fold_pairs))
    tracker = MLflowTracker(
        uri=uri,
        experiment=experiment,
        artifact_location=artifact_location,
        context=context,
        params=flatten_config(run.params),
        tags=tags,
        run_name=run_name(context.overrides, swept=context.swept_keys, task=run.task),
        log_model=log_model,
    )
    tracker.connect()  # an unreachable store fails here, before any data is read
    return [tracker]
