"""The MLflow UI opens a secateurs experiment on its training runs with the key columns: the
shared-view tag the UI's "share view" button would write, written when the experiment is prepared."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from framework.tracking.store import prepare_experiment
from framework.tracking.ui_view import SHARED_VIEW_TAG_PREFIX, VIEW_KEY, runs_view_url


def test_a_prepared_experiment_carries_the_runs_view_its_url_opens(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = prepare_experiment(uri, "secateurs", str(tmp_path / "artifacts"))
    tags = MlflowClient(uri).get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # runs, not the GenAI overview
    view = json.loads(tags[SHARED_VIEW_TAG_PREFIX + VIEW_KEY])
    assert view["orderByKey"] == "attributes.start_time" and view["orderByAsc"] is False  # sweeps nest
    assert {"metrics.`val/top1`", "metrics.`sparsity/total`", "params.`pruner.method`"} <= set(view["selectedColumns"])
    url = runs_view_url("http://127.0.0.1:5000/", experiment_id)
    assert url == (
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
        f"?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"
    )
    prepare_experiment(uri, "secateurs", None)  # preparing again changes nothing
    assert MlflowClient(uri).get_experiment(experiment_id).tags == tags
