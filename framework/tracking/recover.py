"""Replay a run's ``metrics.jsonl`` into MLflow after a tracking outage, and close the run.

    python -m framework.tracking.recover <run dir> [--uri URI] [--experiment NAME]

Which MLflow run receives the metrics:

- the run recorded in ``<run dir>/mlflow_run_id`` (the run the job started), while it is still
  in the store and not deleted;
- otherwise a new run in the experiment (``--experiment``, else the run's own
  ``tracking.experiment``), tagged ``secateurs.recovered_from=<old run id>`` (``none`` when the
  job never got a run) and ``secateurs.recovered_run_dir=<run dir>``. Running the command again
  finds that run by its tags instead of making another.

It is idempotent: a (metric, step) pair already in the run is not logged again, so a second
call on an intact run adds nothing.

The final status it sets, in this order:

1. what the job recorded in ``run_status.json`` (FINISHED, FAILED or KILLED);
2. FINISHED when ``metrics.jsonl`` holds every planned epoch (the job died after its last epoch,
   e.g. while uploading artifacts);
3. the status already in the store when the job managed to close its run;
4. KILLED otherwise: the job stopped without saying why (SIGKILL, out of memory, a lost node).

A run dir whose lock is held belongs to a run in progress: it is refused. So is a run tracked by
a tracker of yours (``tracking._target_``), unless ``--uri`` names the MLflow store to replay it
into: recovery is MLflow's. Every failure is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from framework.errors import SecateursError, TrackingError, short_reason
from framework.process.run_lock import lock_holder
from framework.run_context import RunContext
from framework.tracking.metrics_file import read_metrics, read_status
from framework.tracking.trackers import MLFLOW_TARGET, NO_TRACKING_TARGET

RECOVERED_FROM_TAG = "secateurs.recovered_from"
RECOVERED_DIR_TAG = "secateurs.recovered_run_dir"
TERMINAL = ("FINISHED", "FAILED", "KILLED")


@dataclass
class Recovery:
    """What :func:`recover_run` did."""

    run_id: str
    created: bool  # a new run (the recorded one was gone, or never existed)
    logged: int  # metric points added
    skipped: int  # metric points already there
    status: str  # the run's final status


def recover(run_dir: Path, uri: str, experiment: str = "secateurs") -> str:
    """:func:`recover_run`, returning only the run id."""
    return recover_run(Path(run_dir), uri, experiment).run_id


def recover_run(run_dir: Path, uri: str, experiment: str = "secateurs") -> Recovery:
    """Replay ``run_dir/metrics.jsonl`` into MLflow at ``uri`` and set the final status.

    Raises a one-line :class:`SecateursError` for a missing metrics file, a run in progress, or
    a store that cannot be used.
    """
    run_dir = Path(run_dir)
    metrics_file = RunContext(run_dir).metrics_file
    if not metrics_file.is_file():
        raise TrackingError(f"{metrics_file} does not exist: nothing to recover in {run_dir}")
    _refuse_a_run_in_progress(run_dir)
    records = read_metrics(metrics_file)
    try:
        return _replay(run_dir, records, uri, experiment)
    except SecateursError:
        raise
    except Exception as error:
        raise TrackingError(
            f"cannot recover {run_dir} into the MLflow store {uri!r} "
            f"({type(error).__name__}: {short_reason(error, 200)})"
        ) from None


def _replay(run_dir: Path, records: list[dict[str, float]], uri: str, experiment: str) -> Recovery:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    old_id = _recorded_run_id(run_dir)
    run = _existing_run(client, old_id)
    created = False
    if run is None:
        experiment_id = _experiment_id(client, experiment)
        run = _earlier_recovery(client, experiment_id, old_id, run_dir)
        if run is None:
            tags = {
                RECOVERED_FROM_TAG: old_id or "none",
                RECOVERED_DIR_TAG: str(run_dir.resolve()),
                "hydra.output_dir": str(run_dir),
            }
            run = client.create_run(experiment_id, run_name=f"recovered:{run_dir.name}", tags=tags)
            created = True
    run_id = run.info.run_id

    present: dict[str, set[int]] = {}
    points: list[tuple[str, float, int]] = []
    skipped = 0
    for record in records:
        epoch = int(record["epoch"])
        for key, value in record.items():
            if key == "epoch":
                continue
            if key not in present:
                present[key] = {m.step for m in client.get_metric_history(run_id, key)}
            if epoch in present[key]:
                skipped += 1
            else:
                points.append((key, float(value), epoch))
    metrics = [Metric(key, value, 0, step) for key, value, step in points]
    for start in range(0, len(metrics), 1000):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=metrics[start : start + 1000])

    status = final_status(run_dir, records, run.info.status)
    if run.info.status != status:
        client.set_terminated(run_id, status=status)
    client.set_tag(run_id, "secateurs.recovered", "true")
    return Recovery(run_id, created, len(metrics), skipped, status)


def final_status(run_dir: Path, records: list[dict[str, float]], store_status: str | None) -> str:
    """The status the run ends with (see the module docstring for the rules)."""
    recorded = read_status(run_dir) or {}
    if recorded.get("status") in TERMINAL:
        return str(recorded["status"])
    planned = recorded.get("epochs") or _planned_epochs(run_dir)
    epochs_logged = {int(r["epoch"]) for r in records}
    if isinstance(planned, int) and planned > 0 and epochs_logged >= set(range(planned)):
        return "FINISHED"
    if store_status in TERMINAL:
        return str(store_status)
    return "KILLED"


def _planned_epochs(run_dir: Path) -> int | None:
    """``epochs`` of the run's composed config (``.hydra/config.yaml``), read as plain YAML."""
    import yaml

    try:
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    epochs = config.get("epochs") if isinstance(config, dict) else None
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def _recorded_run_id(run_dir: Path) -> str | None:
    id_file = RunContext(run_dir).mlflow_run_id_file
    if not id_file.is_file():
        return None
    return id_file.read_text(encoding="utf-8").strip() or None


def _existing_run(client, run_id: str | None):
    """The run ``run_id`` when it is in the store and not deleted, else None."""
    from mlflow.exceptions import MlflowException

    if run_id is None:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(error).lower():
            return None
        raise
    return run if run.info.lifecycle_stage == "active" else None


def _experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage == "active":
        return found.experiment_id
    if found is not None:
        raise TrackingError(
            f"experiment {name!r} is deleted in the store; restore it or pass --experiment <another name>"
        )
    return client.create_experiment(name)


def _earlier_recovery(client, experiment_id: str, old_id: str | None, run_dir: Path):
    """The run an earlier call of this command created for ``run_dir``, if any."""
    if old_id is not None:
        query = f"tags.`{RECOVERED_FROM_TAG}` = '{old_id}'"
    else:
        query = f"tags.`{RECOVERED_DIR_TAG}` = '{_quoted(str(run_dir.resolve()))}'"
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    return found[0] if found else None


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _refuse_a_run_in_progress(run_dir: Path) -> None:
    holder = lock_holder(run_dir)
    if holder is not None:
        raise TrackingError(
            f"run dir {run_dir} is in use by a run in progress (pid {holder}); recover it after it ends"
        )


def _run_config(run_dir: Path) -> dict[str, str]:
    """``tracking.uri``, ``tracking.experiment`` and ``tracking._target_`` of the run's composed
    config, when readable."""
    import yaml

    try:
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text(encoding="utf-8"))
        tracking = config.get("tracking") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    found = {k: tracking.get(k) for k in ("uri", "experiment", "_target_")}
    # The default store names ${paths.output_dir}, itself ${project_root:}/outputs unless the run
    # set it: those two are resolved here; any other interpolation needs the config machinery.
    from framework.config import project_root

    output_dir = str((config.get("paths") or {}).get("output_dir") or "${project_root:}/outputs")
    output_dir = output_dir.replace("${project_root:}", str(project_root()))
    found = {k: v.replace("${paths.output_dir}", output_dir) if isinstance(v, str) else v for k, v in found.items()}
    return {k: v for k, v in found.items() if isinstance(v, str) and v and "${" not in v}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--uri",
        default=None,
        help="tracking URI (default: the run's tracking.uri, else the project's outputs/mlflow.db)",
    )
    parser.add_argument(
        "--experiment",
        default=None,
        help="experiment of a new run (default: the run's tracking.experiment, else secateurs)",
    )
    args = parser.parse_args(argv)
    from_config = _run_config(args.run_dir)
    tracker = from_config.get("_target_")
    if tracker not in (None, MLFLOW_TARGET, NO_TRACKING_TARGET) and args.uri is None:
        print(
            f"error: recover replays metrics into MLflow, and {args.run_dir} was tracked by "
            f"tracking._target_={tracker}; allowed: a run tracked with tracking=mlflow or none, "
            "or --uri <MLflow store> to replay it there anyway",
            file=sys.stderr,
        )
        return 2
    uri = args.uri or from_config.get("uri")
    if uri is None:
        from framework.config import project_root

        uri = f"sqlite:///{project_root()}/outputs/mlflow.db"
    experiment = args.experiment or from_config.get("experiment") or "secateurs"
    _quiet_store_logs()
    try:
        result = recover_run(args.run_dir, uri, experiment)
    except SecateursError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    what = "a new MLflow run" if result.created else "MLflow run"
    print(
        f"logged {result.logged} metric points ({result.skipped} already there) from "
        f"{RunContext(args.run_dir).metrics_file} into {what} {result.run_id} at {uri}; status {result.status}"
    )
    return 0


def _quiet_store_logs() -> None:
    """Keep SQLAlchemy's and alembic's chatter (and tracebacks) out of a one-line command."""
    import logging

    for name in ("alembic", "sqlalchemy", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
