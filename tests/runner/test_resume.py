"""resume=<path>: continue a checkpoint in a new run dir, same MLflow run, same result as one run."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient
from support import store_overrides

from framework.errors import ConfigError


@pytest.mark.slow
def test_resume_from_a_path_continues_the_same_mlflow_run_exactly(
    run_experiment, tracking_overrides, shared_store, tmp_path
):
    # A constant lr makes "2 epochs, then 2 more" the same computation as "4 epochs".
    # deploy.enabled=false: latencies measured by the deploy step are not learned state
    common = [*tracking_overrides, "lr_scheduler=none", "tracking.log_model=false", "deploy.enabled=false"]
    _, _, straight = run_experiment([*common, "epochs=4"], run_dir=tmp_path / "straight")
    _, first, _ = run_experiment([*common, "epochs=2"], run_dir=tmp_path / "first")
    checkpoint = first.run_dir / "checkpoints" / "last.pt"
    # Training longer is a change of config: it must be asked for.
    with pytest.raises(ConfigError, match=r"resume: the checkpoint was trained with another config \(epochs: 2 -> 4\)"):
        run_experiment([*common, "epochs=4", f"resume={checkpoint}"], run_dir=tmp_path / "refused")
    _, second, resumed = run_experiment(
        [*common, "epochs=4", f"resume={checkpoint}", "resume_changed=allow"], run_dir=tmp_path / "second"
    )

    assert resumed == straight
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(second.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert b["epoch"] == 4

    first_run_id = torch.load(checkpoint, weights_only=True)["hooks"]["trackers"]["mlflow"]["run_id"]
    assert b["hooks"]["trackers"]["mlflow"]["run_id"] == first_run_id  # continued, not a new run
    client = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1])
    history = client.get_metric_history(first_run_id, "val/loss")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    tags = client.get_run(first_run_id).data.tags
    assert tags["resumed_at_epoch"] == "2"
    assert tags["resume.changed"] == "epochs: 2 -> 4"


def test_resume_auto_without_an_earlier_run_starts_fresh(run_experiment, tmp_path):
    _, context, final = run_experiment(["tracking=none", "epochs=1", "resume=auto"], run_dir=tmp_path / "fresh")
    assert torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_resume_refuses_a_changed_config_by_name_and_allows_it_when_asked(run_experiment, tmp_path):
    base = ["tracking=none", "pruner=agp", "epochs=3", "schedule.ending_epoch=2"]
    _, first, _ = run_experiment(base, run_dir=tmp_path / "first")
    checkpoint = first.run_dir / "checkpoints" / "last.pt"
    changed = [
        "tracking=none",
        "pruner=agp",
        "epochs=6",
        "schedule.ending_epoch=5",
        "pruner.final_sparsity=0.9",
        f"resume={checkpoint}",
    ]
    with pytest.raises(ConfigError) as refused:
        run_experiment(changed, run_dir=tmp_path / "refused")
    message = str(refused.value)
    assert "\n" not in message
    assert "epochs: 3 -> 6" in message and "pruner.final_sparsity: 0.7 -> 0.9" in message
    assert "schedule.ending_epoch: 2 -> 5" in message
    assert "lr_scheduler.T_max: 3 -> 6" in message

    # allowed: the new values apply: 6 epochs, cosine over 6, AGP's schedule to 0.9 at epoch 4
    _, second, final = run_experiment([*changed, "resume_changed=allow"], run_dir=tmp_path / "second")
    saved = torch.load(second.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert saved["epoch"] == 6
    assert saved["lr_scheduler"]["T_max"] == 6
    lrs = [m["lr"] for m in saved["history"]]
    # epochs 0-2 ran under cosine over 3 epochs; after resume the lr follows T_max=6 (no restart)
    assert lrs[3] < lrs[2] or lrs[2] == 0.0
    assert final["sparsity/total"] == pytest.approx(0.9, abs=0.01)

    # a different model can never continue the checkpoint
    with pytest.raises(ConfigError, match="cannot continue after a change of model._target_"):
        run_experiment([*changed, "resume_changed=allow", "model=resnet20"], run_dir=tmp_path / "model")
