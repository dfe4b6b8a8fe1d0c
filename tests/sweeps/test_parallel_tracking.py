"""Many jobs at once against one store: a fresh SQLite file, and a real tracking server."""

from __future__ import annotations

import os

import pytest
import zygote
from mlflow.tracking import MlflowClient
from mlflow_server import MlflowServer
from support import HANG_S, ROOT, cli_dirs, run_cli, store_overrides


@pytest.mark.slow
def test_two_independent_runs_started_together_on_a_fresh_store_both_finish(tmp_path):
    processes = [
        zygote.ForkedRun(
            [
                str(ROOT / "run.py"),
                "epochs=1",
                "tracking.log_model=false",
                "progress=false",
                f"optimizer.lr={lr}",
                f"hydra.run.dir={tmp_path}/run{index}",
                *store_overrides(tmp_path, fresh=True),
            ],
            cwd=ROOT,
            env=dict(os.environ),
        )
        for index, lr in enumerate(("0.05", "0.1"))
    ]
    outputs = [p.communicate(timeout=HANG_S) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiments = [e for e in client.search_experiments() if e.name == "secateurs"]
    assert len(experiments) == 1
    runs = client.search_runs([experiments[0].experiment_id])
    assert sorted(r.data.params["optimizer.lr"] for r in runs) == ["0.05", "0.1"]
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow
def test_a_sweep_against_a_real_tracking_server_groups_its_jobs(tmp_path):
    server = MlflowServer(tmp_path / "server").start()
    try:
        args = [
            "-m",
            "optimizer.lr=0.05,0.1",
            "epochs=1",
            "tracking.log_model=false",
            *cli_dirs(tmp_path),
            f"tracking.uri={server.uri}",
            "tracking.artifact_location=null",
        ]
        result = run_cli(args)
        assert result.returncode == 0, result.stderr[-3000:]
        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name("secateurs")
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        runs = client.search_runs([experiment.experiment_id])
        parent = next(r for r in runs if r.data.tags.get("sweep.role") == "parent")
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.data.tags["hydra.job.num"] for r in children) == ["0", "1"] and len(runs) == 3
        assert parent.info.status == "FINISHED"
        # a sweep of dense runs has no sparsity to trade against: the table and page, no Pareto plot
        assert {a.path for a in client.list_artifacts(parent.info.run_id, "summary")} == {
            "summary/sweep_summary.csv",
            "summary/sweep_summary.md",
            "summary/sweep_pareto.html",
        }
    finally:
        server.stop()
