"""The deploy step in a real run: every variant measured and logged, the servable models logged
(the int8 one when asked), the table artifact, and N:M runs checked for their pattern."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.datasets import load_digits
from support import cli_dirs, run_cli, store_overrides

from framework.data.digits import stratified_split


def raw_val_digits():
    images, targets = load_digits(return_X_y=True)
    _, val_idx = stratified_split(targets, 0.2, 0)
    return images[val_idx].reshape(-1, 1, 8, 8).astype(np.float32), targets[val_idx]


def finished_run(tmp_path, overrides):
    import mlflow

    result = run_cli([*overrides, "tracking.experiment=deploy", *cli_dirs(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = (tmp_path / "run" / "mlflow_run_id").read_text().strip()
    return mlflow.MlflowClient(), run_id


@pytest.mark.slow
def test_a_thinned_int8_run_logs_every_variant_and_both_servable_models(tmp_path):
    import mlflow.pyfunc

    client, run_id = finished_run(
        tmp_path,
        [
            "pruner=agp_filter",
            "epochs=3",
            "deploy.quantize=int8",
            "deploy.int8_calibration_batches=2",
            "loader.batch_size=32",
        ],
    )
    metrics = client.get_run(run_id).data.metrics
    for variant in ("dense_fp32", "thinned_fp32", "fused_fp32", "fused_onnx_fp32", "int8_onnx"):
        for what in ("val_top1", "bytes", "latency_ms_b1", "latency_ms_b32"):
            assert f"deploy/{what}/{variant}" in metrics, (variant, what)
    assert metrics["deploy/fused_max_error"] <= 1e-5
    assert metrics["deploy/val_top1/thinned_fp32"] == pytest.approx(metrics["thin/val_top1"])  # the same model
    assert metrics["deploy/val_top1/fused_onnx_fp32"] == pytest.approx(metrics["val/top1"], abs=1 / 360 + 1e-9)
    # the model before thinning, as measured when it was thinned
    assert metrics["deploy/bytes/dense_fp32"] == metrics["thin/state_dict_bytes/dense"]
    assert metrics["deploy/latency_ms_b1/dense_fp32"] == metrics["thin/eager_ms_b1/dense"]
    assert (
        metrics["deploy/bytes/int8_onnx"] < metrics["deploy/bytes/fused_onnx_fp32"] < metrics["deploy/bytes/dense_fp32"]
    )
    artifacts = [f.path for f in client.list_artifacts(run_id, "deploy")]
    assert "deploy/variants.csv" in artifacts

    raw, labels = raw_val_digits()
    for name, variant in (("model", "fused_onnx_fp32"), ("model_int8", "int8_onnx")):
        served = mlflow.pyfunc.load_model(f"runs:/{run_id}/{name}").predict(raw)
        accuracy = float((served["label"].to_numpy() == labels).mean())
        # raw pixels preprocessed in numpy vs the loader's torch tensors: one digit may round apart
        assert accuracy == pytest.approx(metrics[f"deploy/val_top1/{variant}"], abs=1 / 360 + 1e-9), name


@pytest.mark.slow
def test_a_dense_run_deploys_without_int8(tmp_path):
    client, run_id = finished_run(tmp_path, ["epochs=1"])
    metrics = client.get_run(run_id).data.metrics
    assert {k.split("/")[2] for k in metrics if k.startswith("deploy/val_top1/")} == {
        "dense_fp32",
        "fused_fp32",
        "fused_onnx_fp32",
    }
    names = {m.name for m in client.search_logged_models(experiment_ids=[client.get_run(run_id).info.experiment_id])}
    assert names == {"model"}


@pytest.mark.slow
def test_an_nm_run_reports_its_pattern_held(tmp_path):
    client, run_id = finished_run(
        tmp_path,
        [
            "pruner=agp_nm",
            "pruner.exclude=[block1.0.weight]",
            "epochs=2",
            "tracking.log_model=false",
            "deploy.enabled=false",
        ],
    )
    assert client.get_run(run_id).data.metrics["nm/pattern_ok"] == 1.0


def test_a_model_onnx_cannot_export_keeps_its_training_and_skips_the_step_or_fails_when_required(
    run_experiment, tracking_overrides, shared_store, tmp_path, caplog
):
    """torch.fft.fft2 has no ONNX op: the last epoch is saved and tracked all the same; the step is
    one line naming the op and deploy.enabled=false, the run FINISHED with deploy/skipped=1, or
    FAILED when the user asked for it (deploy.required=true) (issue 29 item 2)."""
    import json

    import torch
    from mlflow.tracking import MlflowClient

    from framework.deploy.errors import DeployError

    store = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1])
    fft = ["debug=fast", "progress=false", *tracking_overrides, "tracking=mlflow", "model._target_=fft_models.FFTNet"]
    caplog.set_level(logging.WARNING, logger="framework.runner.deploy_hook")

    def saved(run_dir):
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
        (status,) = {json.loads((run_dir / "run_status.json").read_text())["status"]}
        run = store.get_run((run_dir / "mlflow_run_id").read_text().strip())
        return records, checkpoint["epoch"], status, run

    _, context, final = run_experiment(fft, run_dir=tmp_path / "skipped")
    assert final["deploy/skipped"] == 1.0 and "val/top1" in final
    (line,) = [r.getMessage() for r in caplog.records if "deploy step" in r.getMessage()]
    assert "\n" not in line and "fft_fft2" in line and "deploy.enabled=false" in line and "skipped" in line
    records, epoch, status, run = saved(context.run_dir)
    assert len(records) == 1 and epoch == 1 and records[-1]["deploy/skipped"] == 1.0
    assert status == "FINISHED" and run.info.status == "FINISHED" and run.data.metrics["deploy/skipped"] == 1.0
    assert not list((context.run_dir / "deploy").glob("*.onnx"))

    with pytest.raises(DeployError) as failed:
        run_experiment([*fft, "deploy.required=true"], run_dir=tmp_path / "required")
    assert (
        "\n" not in str(failed.value)
        and "fft_fft2" in str(failed.value)
        and "deploy.required=true" in str(failed.value)
    )
    records, epoch, status, run = saved(tmp_path / "required")
    assert len(records) == 1 and epoch == 1  # the last epoch saved before the run failed
    assert (
        status == "FAILED" and run.info.status == "FAILED" and run.data.metrics["val/top1"] == records[-1]["val/top1"]
    )
