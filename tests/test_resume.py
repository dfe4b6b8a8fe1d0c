"""resume=<path>: continue a checkpoint in a new run dir, same MLflow run, same result as one run."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from support import store_overrides


@pytest.mark.slow
def test_resume_from_a_path_continues_the_same_mlflow_run_exactly(run_experiment, tracking_overrides, shared_store, tmp_path):
    # A constant lr makes "2 epochs, then 2 more" the same computation as "4 epochs".
    common = [*tracking_overrides, "lr_scheduler=none", "tracking.log_model=false"]
    _, _, straight = run_experiment([*common, "epochs=4"], run_dir=tmp_path / "straight")
    _, first, _ = run_experiment([*common, "epochs=2"], run_dir=tmp_path / "first")
    checkpoint = first.run_dir / "checkpoints" / "last.pt"
    _, second, resumed = run_experiment([*common, "epochs=4", f"resume={checkpoint}"], run_dir=tmp_path / "second")

    assert resumed == straight
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(second.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert b["epoch"] == 4

    first_run_id = torch.load(checkpoint, weights_only=True)["hooks"]["mlflow"]["run_id"]
    assert b["hooks"]["mlflow"]["run_id"] == first_run_id  # continued, not a new run
    client = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1])
    history = client.get_metric_history(first_run_id, "val/loss")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    assert client.get_run(first_run_id).data.tags["resumed_at_epoch"] == "2"


def test_resume_auto_without_an_earlier_run_starts_fresh(run_experiment, tmp_path):
    _, context, final = run_experiment(["tracking=none", "epochs=1", "resume=auto"], run_dir=tmp_path / "fresh")
    assert torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
