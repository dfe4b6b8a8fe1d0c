"""A team store: an MLflow tracking server on PostgreSQL that serves the artifacts itself
(``--serve-artifacts``), started on 127.0.0.1, and a parallel sweep logging to it."""

from __future__ import annotations

import pytest
from cli_in_process import run_main
from mlflow.tracking import MlflowClient
from mlflow_server import MlflowServer
from postgres_server import PostgresServer, PostgresUnavailable
from support import cli_dirs


@pytest.fixture
def postgres():
    try:
        server = PostgresServer()
        server.start()
    except PostgresUnavailable as why:
        pytest.skip(f"PostgreSQL cannot be started here: {why}")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_a_joblib_sweep_logs_to_a_postgres_backed_server_that_serves_its_artifacts(tmp_path, postgres):
    import psycopg2

    server = MlflowServer(tmp_path / "server", backend_store_uri=postgres.uri, serve_artifacts=True).start()
    try:
        result = run_main(
            [
                "-m",
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2",
                "optimizer.lr=0.05,0.1",
                "epochs=1",
                "tracking.log_model=false",
                *cli_dirs(tmp_path, mlflow=False),
                f"tracking.uri={server.uri}",
                "tracking.artifact_location=null",
            ]
        )
        assert result.returncode == 0, result.stderr[-3000:]
        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name("secateurs")
        # artifacts go through the server (no shared filesystem), into its artifacts destination
        assert experiment.artifact_location.startswith("mlflow-artifacts:")
        runs = client.search_runs([experiment.experiment_id])
        parent = next(r for r in runs if r.data.tags.get("sweep.role") == "parent")
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.data.params["optimizer.lr"] for r in children) == ["0.05", "0.1"]
        assert {r.info.status for r in runs} == {"FINISHED"}
        assert "summary/sweep_summary.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "summary")}
        stored = list((tmp_path / "server" / "artifacts").rglob("sweep_summary.md"))
        assert len(stored) == 1 and parent.info.run_id in str(stored[0])
    finally:
        server.stop()
    # the runs are rows in PostgreSQL, not in a file of the server's
    db = psycopg2.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname=postgres.database)
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM runs")
            assert cursor.fetchone()[0] == 3
    finally:
        db.close()  # psycopg2's "with connection" ends the transaction, not the connection
    assert not (tmp_path / "server" / "server.db").exists()
