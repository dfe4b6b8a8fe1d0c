"""The MLflow UI view a secateurs experiment opens on: its training runs, with the columns that
matter, newest first with each sweep's jobs nested under its parent run.

MLflow 3 opens an experiment in its GenAI view unless the experiment is tagged as a model-training
one (``mlflow.experimentKind``, set in store.py) or the URL says ``workflowType=machine_learning``;
and the runs table shows no metric column until one is picked. The UI's own "share view" feature
keeps a view (sort order, columns, expanded runs) in an experiment tag
``mlflow.sharedViewState.<key>`` and opens it with ``?viewStateShareKey=<key>``: we write that tag
when the experiment is prepared, so :func:`runs_view_url` opens the runs table ready to read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "secateurs-runs"
KEY_METRICS = ("val/top1", "sparsity/total", "val/loss", "thin/macs_reduction")
KEY_PARAMS = ("pruner.method", "pruner.structure", "pruner.final_sparsity", "fold_batchnorm", "optimizer.lr", "epochs")


def column(kind: str, name: str) -> str:
    """The UI's column key: ``metrics.`val/top1```."""
    return f"{kind}.`{name}`"


def view_state(metrics: Sequence[str] = KEY_METRICS, params: Sequence[str] = KEY_PARAMS) -> str:
    """The JSON the UI reads from a shared-view tag: the search facets and the runs-table state
    (its columns). Newest first: the UI nests a sweep's jobs under its parent run only in that
    order (sorted by a metric, every run is a row of its own), and collapsed, the parent row shows
    the sweep's best job."""
    columns: Iterable[str] = [
        column("attributes", "Source"),
        *(column("metrics", m) for m in metrics),
        *(column("params", p) for p in params),
    ]
    return json.dumps(
        {
            "searchFilter": "",
            "orderByKey": "attributes.start_time",  # the UI's own key for its default order
            "orderByAsc": False,
            "lifecycleFilter": "Active",
            "selectedColumns": list(columns),
        }
    )


def write_runs_view(client, experiment_id: str) -> None:
    client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG_PREFIX + VIEW_KEY, view_state())


def runs_view_url(server_url: str, experiment_id: str) -> str:
    """``http://127.0.0.1:5000/#/experiments/1/runs?...``: the experiment's runs, in the view above."""
    return (
        f"{server_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"
    )


def main(argv=None) -> int:
    """``python -m framework.tracking.ui_view [--uri URI] [--experiment NAME] [--server URL]``: the
    link to open (``make ui`` prints it)."""
    import argparse

    from mlflow.tracking import MlflowClient

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--uri", default="sqlite:///outputs/mlflow.db")
    parser.add_argument("--experiment", default="secateurs")
    parser.add_argument("--server", default="http://127.0.0.1:5000")
    args = parser.parse_args(argv)
    found = MlflowClient(args.uri).get_experiment_by_name(args.experiment)
    if found is None:
        print(f"open {args.server} (no experiment {args.experiment!r} in {args.uri} yet)")
        return 0
    print(f"open {runs_view_url(args.server, found.experiment_id)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
