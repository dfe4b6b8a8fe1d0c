"""Runs that end with a physically smaller model (pruner.thin): sizes, speed, equality, resume."""

from __future__ import annotations

import signal
import time

import pytest
import torch
from mlflow.tracking import MlflowClient
from support import cli_dirs, run_cli, store_overrides
from test_reliability import final_state, start_cli, wait_for_epochs

VAL_IMAGES = 359  # digits' validation split (seed 0): one image is 1/359 of top-1


@pytest.mark.slow
def test_resnet20_filter_run_ends_with_a_thinned_model_half_the_size(
    run_experiment, tracking_overrides, shared_store, tmp_path
):
    # the acceptance command: model=resnet20 pruner=agp_filter fold_batchnorm=true epochs=4
    cfg, context, final = run_experiment(
        [*tracking_overrides, "model=resnet20", "pruner=agp_filter", "fold_batchnorm=true", "epochs=4"]
    )
    assert final["thin/params/thinned"] / final["thin/params/dense"] < 0.5
    assert final["thin/macs/thinned"] < final["thin/macs/dense"] / 2
    assert final["thin/eager_ms_b1/thinned"] > 0 and final["thin/eager_speedup_b1"] > 0
    # the thinned model computes what the masked one did: at most one validation image apart
    assert abs(final["thin/val_top1"] - final["val/top1"]) <= 1 / VAL_IMAGES + 1e-9

    client = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1])
    run_id = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)["hooks"]["trackers"]["mlflow"][
        "run_id"
    ]
    logged = client.get_run(run_id).data.metrics
    for key in (
        "thin/params/dense",
        "thin/params/thinned",
        "thin/macs/thinned",
        "thin/eager_speedup_b1",
        "thin/val_top1",
        "thin/model_bytes",
    ):
        assert logged[key] == pytest.approx(final[key]), key
    artifacts = {a.path for a in client.list_artifacts(run_id, "thinned")}
    assert {"thinned/model.pt", "thinned/model.onnx"} <= artifacts
    assert "thin/onnx_speedup_b1" in final and final["thin/onnx_max_abs_error/thinned"] < 1e-3

    # the saved small model is accepted as pretrained weights by a new run (resized by its recipe)
    _, _, again = run_experiment(
        [
            "tracking=none",
            "model=resnet20",
            "epochs=1",
            f"pretrained={context.run_dir / 'thinned' / 'model.pt'}",
            "optimizer.lr=1e-9",
            "optimizer.weight_decay=0",
        ],
        run_dir=tmp_path / "from_thinned",
    )
    assert abs(again["val/top1"] - final["thin/val_top1"]) <= 1 / VAL_IMAGES + 1e-9


TIMING = ("_ms_", "speedup", "bytes")  # measured, so different in every process


def without_timings(metrics: dict) -> dict:
    return {
        epoch: {k: v for k, v in record.items() if not any(t in k for t in TIMING)} for epoch, record in metrics.items()
    }


@pytest.mark.slow
def test_thin_after_pruning_fine_tunes_the_small_model_and_resumes_exactly(tmp_path):
    args = [
        "epochs=4",
        "pruner=agp_filter",
        "schedule.ending_epoch=2",
        "pruner.thin=after_pruning",
        "tracking.log_model=false",
        "loader.batch_size=16",
        "optimizer=adam",
    ]
    straight_dir = tmp_path / "straight"
    result = run_cli([*args, *cli_dirs(straight_dir)])
    assert result.returncode == 0, result.stderr[-2000:]

    crash_dir = tmp_path / "crash"
    crash_args = [*args, *cli_dirs(crash_dir)]
    process = start_cli(crash_args)
    wait_for_epochs(crash_dir / "run" / "metrics.jsonl", 3, process)  # thinned after epoch 1
    time.sleep(0.15)  # into epoch 3
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = run_cli([*crash_args, "resume=auto"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    straight, straight_metrics = final_state(straight_dir / "run")
    crashed, crashed_metrics = final_state(crash_dir / "run")
    recipe = straight["hooks"]["thinning"]["recipe"]
    assert straight["hooks"]["thinning"]["thinned_at"] == 1 and recipe["modules"]
    assert straight["model"]["block1.0.weight"].shape[0] == 16  # 32 filters, half removed
    for key, value in straight["model"].items():
        assert torch.equal(value, crashed["model"][key]), key
    for index, state in straight["optimizer"]["state"].items():  # Adam's moments, thinned too
        for name, value in state.items():
            assert torch.equal(value, crashed["optimizer"]["state"][index][name]), (index, name)
    assert without_timings(crashed_metrics) == without_timings(straight_metrics)
    assert "thin/val_top1" in straight_metrics[1]
    assert straight_metrics[3]["sparsity/total"] == straight_metrics[1]["sparsity/total"]  # frozen after thinning
