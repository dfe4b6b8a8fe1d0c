"""resume=auto after the MLflow store was deleted continues in a new MLflow run that gets the
earlier epochs from metrics.jsonl: nothing lost (issue 21 item 7)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from support import cli_dirs, run_cli

from framework.tracking.mlflow_tracker import LOST_RUN_TAG

# what is tracked is the point, not the deploy step or the logged model (each costs seconds per run)
QUIET = ["deploy.enabled=false", "tracking.log_model=false"]


@pytest.mark.slow
def test_resume_after_the_store_was_deleted_continues_with_every_epoch(tmp_path):
    first = run_cli(["epochs=1", *QUIET, *cli_dirs(tmp_path)])
    assert first.returncode == 0, first.stderr[-2000:]
    # (not asked through MlflowClient here: it keeps its SQLite engine, on the deleted file, per URI)
    lost_id = (tmp_path / "run" / "mlflow_run_id").read_text().strip()
    (tmp_path / "mlflow.db").unlink()

    resumed = run_cli(["epochs=2", *QUIET, "resume=auto", "resume_changed=allow", *cli_dirs(tmp_path)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert f"MLflow run {lost_id} is not in the store" in resumed.stdout + resumed.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED" and run.data.tags[LOST_RUN_TAG] == lost_id
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/top1")] == [0, 1]
    assert (tmp_path / "run" / "mlflow_run_id").read_text().strip() == run.info.run_id
