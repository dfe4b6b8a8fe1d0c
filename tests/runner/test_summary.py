"""The end of a run says where everything is: run folder, checkpoints, thinned model files, the
MLflow run and how to open it, the headline figures."""

from __future__ import annotations

import logging

import pytest
from mlflow.tracking import MlflowClient
from support import store_overrides

from framework.run_context import RunContext
from framework.runner.summary import where_everything_is
from framework.tracking.mlflow_tracker import MLflowTracker


@pytest.mark.slow
def test_a_thinned_run_ends_with_one_block_that_says_where_everything_is(
    run_experiment, tracking_overrides, shared_store, caplog
):
    caplog.set_level(logging.INFO, logger="framework.runner")
    cfg, context, final = run_experiment(
        [*tracking_overrides, "epochs=2", "pruner=agp_filter", "tracking.log_model=false", "progress=false"]
    )
    (block,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("where everything is:")]
    lines = dict(line.strip().split(":", 1) for line in block.splitlines()[1:])
    lines = {key: value.strip() for key, value in lines.items()}
    run_dir = context.run_dir
    assert lines["run folder"] == str(run_dir)
    assert lines["checkpoints"] == f"{run_dir / 'checkpoints'} (best.pt, last.pt)"
    thinned = sorted(p.name for p in (run_dir / "thinned").iterdir())
    assert "model.pt" in thinned and lines["thinned model"] == f"{run_dir / 'thinned'} ({', '.join(thinned)})"

    run_id = lines["MLflow run"].split()[0]
    uri = store_overrides(shared_store)[0].split("=", 1)[1]
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.metrics["val/top1"] == final["val/top1"]
    assert lines["MLflow UI"].startswith(f"mlflow ui --backend-store-uri {uri} ")

    results = lines["results"]
    assert f"val/top1 {final['val/top1']:.4f}" in results
    assert f"sparsity {final['sparsity/total']:.3f}" in results
    assert "params " in results and "MACs " in results and "speedup x" in results
    # a line per stage while the slow ones run (issue 29 item 14): thinning, its measurements, the deploy step
    stages = ["thinning at epoch ", "thinning: measuring", "deploy step: ", f"deployable model ({run_dir / 'deploy'})"]
    said = [
        next(s for s in stages if r.getMessage().startswith(s))
        for r in caplog.records
        if r.getMessage().startswith(tuple(stages))
    ]
    assert said == stages


def test_a_tracking_server_gets_the_run_s_url(tmp_path):
    context = RunContext(tmp_path)
    tracker = MLflowTracker(
        uri="http://127.0.0.1:5123/",
        experiment="e",
        artifact_location=None,
        context=context,
        params={},
        tags={},
        run_name="r",
    )
    tracker.run_id, tracker.experiment_id = "abc123", "7"
    history = [{"val/top1": 0.5}, {"val/top1": 0.75}]
    block = where_everything_is(context, history, tracker.where())
    assert "  MLflow UI:   http://127.0.0.1:5123/#/experiments/7/runs/abc123" in block.splitlines()
    assert block.splitlines()[-1] == "  results:     val/top1 0.7500"
    # a run that was never tracked: no MLflow lines, no checkpoint line
    assert where_everything_is(context, history, []).splitlines() == [
        "where everything is:",
        f"  run folder:  {tmp_path}",
        "  results:     val/top1 0.7500",
    ]


def test_a_local_store_s_link_opens_the_experiment_s_training_runs(tmp_path):
    """Not the server's home page, which is MLflow 3's GenAI view (issue 29 item 11)."""
    tracker = MLflowTracker(
        uri=f"sqlite:///{tmp_path}/mlflow.db",
        experiment="e",
        artifact_location=None,
        context=RunContext(tmp_path),
        params={},
        tags={},
        run_name="r",
    )
    tracker.run_id, tracker.experiment_id = "abc123", "7"
    (ui,) = [line for line in tracker.where() if line.startswith("MLflow UI:")]
    assert ui == (
        f"MLflow UI:   mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db  (then "
        "http://127.0.0.1:5000/#/experiments/7/runs?viewStateShareKey=secateurs-runs&workflowType=machine_learning)"
    )
