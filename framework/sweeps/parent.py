"""The MLflow parent run of a multirun: created before any job starts, closed with the summary.

Jobs find its id in ``<sweep dir>/sweep.json`` and tag their own runs ``mlflow.parentRunId`` with
it, so the MLflow UI nests them under it, whichever process or machine runs them.
"""

from __future__ import annotations

from pathlib import Path

from framework.errors import TrackingError, short_reason
from framework.sweeps.records import SweepInfo
from framework.training.signals import signals_deferred


def start_parent_run(info: SweepInfo, uri: str, experiment: str, artifact_location: str | None) -> None:
    """Create the store and experiment (once, under the store's lock) and the parent run; fills
    ``info.tracking_uri``, ``info.experiment_id`` and ``info.parent_run_id``."""
    from mlflow.tracking import MlflowClient

    from framework.tracking import mlflow_hook  # noqa: F401  (its fail-fast HTTP settings)
    from framework.tracking.store import prepare_experiment

    try:
        experiment_id = prepare_experiment(uri, experiment, artifact_location)
        shown = " ".join(o for o in info.overrides if not o.startswith(("hydra.", "tracking.")))
        with signals_deferred():  # a Ctrl-C never cuts a store transaction in half
            run = MlflowClient(tracking_uri=uri).create_run(
                experiment_id, run_name=f"sweep {shown}"[:250], tags=parent_tags(info)
            )
    except Exception as error:
        raise TrackingError(
            f"cannot reach the MLflow store tracking.uri={uri!r} ({short_reason(error, 200)}); "
            "start the server, fix tracking.uri, or run with tracking=none"
        ) from None
    info.tracking_uri, info.experiment_id, info.parent_run_id = uri, experiment_id, run.info.run_id


def reopen_parent_run(info: SweepInfo) -> None:
    """Mark an earlier sweep's parent run RUNNING again, with this launch's tags."""
    from mlflow.tracking import MlflowClient

    run_id = _parent_run_id(info)
    try:
        with signals_deferred():  # a Ctrl-C never cuts a store transaction in half
            client = MlflowClient(tracking_uri=info.tracking_uri)
            client.update_run(run_id, status="RUNNING")
            for key, value in parent_tags(info).items():
                client.set_tag(run_id, key, value)
    except Exception as error:
        raise TrackingError(
            f"cannot reopen the sweep's MLflow run {info.parent_run_id} in tracking.uri={info.tracking_uri!r} "
            f"({short_reason(error, 200)}); start the server, fix tracking.uri, or use a new hydra.sweep.dir"
        ) from None


def parent_tags(info: SweepInfo) -> dict[str, str]:
    return {
        "sweep.dir": info.sweep_dir,
        "sweep.sweeper": info.sweeper,
        "sweep.launcher": info.launcher,
        "sweep.overrides": " ".join(info.overrides)[:5000] or "(none)",
        "sweep.swept_keys": ",".join(info.swept_keys),
        "sweep.role": "parent",
    }


def finish_parent_run(
    info: SweepInfo,
    summary_dir: Path,
    status: str | None,
    tags: dict[str, str],
    metrics: dict[str, float],
    params: dict[str, str] | None = None,
) -> str | None:
    """Log the summary's files, tags, metrics and the best job's swept values (``params``) to the
    parent run and close it with ``status``. Returns a warning line when the store could not take
    them (the files stay on disk)."""
    from mlflow.tracking import MlflowClient

    run_id = _parent_run_id(info)
    try:
        with signals_deferred():  # a Ctrl-C never cuts a store transaction in half
            client = MlflowClient(tracking_uri=info.tracking_uri)
            for key, tag in tags.items():
                client.set_tag(run_id, key, tag)
            for key, metric in metrics.items():
                client.log_metric(run_id, key, metric)
            logged = client.get_run(run_id).data.params
            for key, param in (params or {}).items():
                if key not in logged:
                    client.log_param(run_id, key, param)
                elif logged[key] != param:  # a continued sweep with a new best: MLflow params never change
                    client.set_tag(run_id, f"sweep.best.{key}", param)
            client.log_artifacts(run_id, str(summary_dir), artifact_path="summary")
            if status:  # None: a rebuilt summary leaves the run's status alone
                client.set_terminated(run_id, status=status)
    except Exception as error:
        return f"could not log the sweep summary to MLflow run {info.parent_run_id} ({short_reason(error, 200)}); it is in {summary_dir}"
    return None


def _parent_run_id(info: SweepInfo) -> str:
    """The parent run's id, which start_parent_run (or the sweep.json it wrote) always sets first."""
    if info.parent_run_id is None:
        raise TrackingError(f"the sweep in {info.sweep_dir} has no MLflow parent run id (sweep.json lacks it)")
    return info.parent_run_id
