"""Replay a run's ``metrics.jsonl`` into MLflow after a tracking outage.

    python -m framework.tracking.recover <run dir> [--uri URI]

The metrics go to the MLflow run recorded in ``<run dir>/mlflow_run_id`` (the run the job
started), or to a new run of the experiment given by ``--experiment`` when that run never got
created. Metrics that are already there are logged again at the same step, which MLflow shows as
the same point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from framework.tracking.metrics_file import FILENAME, read_metrics
from framework.tracking.mlflow_hook import RUN_ID_FILE


def recover(run_dir: Path, uri: str, experiment: str = "secateurs") -> str:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    records = read_metrics(run_dir / FILENAME)
    client = MlflowClient(tracking_uri=uri)
    id_file = run_dir / RUN_ID_FILE
    if id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run_id = client.create_run(experiment_id, run_name=f"recovered:{run_dir.name}").info.run_id
    metrics = []
    for record in records:
        epoch = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch":
                metrics.append(Metric(key, float(value), 0, epoch))
    for start in range(0, len(metrics), 1000):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    return run_id


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--uri", default=None, help="tracking URI (default: the project's outputs/mlflow.db)")
    parser.add_argument("--experiment", default="secateurs")
    args = parser.parse_args(argv)
    if not (args.run_dir / FILENAME).is_file():
        print(f"error: {args.run_dir / FILENAME} does not exist", file=sys.stderr)
        return 2
    if args.uri is None:
        from framework.config import project_root

        args.uri = f"sqlite:///{project_root()}/outputs/mlflow.db"
    run_id = recover(args.run_dir, args.uri, args.experiment)
    print(f"logged {args.run_dir / FILENAME} into MLflow run {run_id} at {args.uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
