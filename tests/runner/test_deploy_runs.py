"""The deploy step in a real run: every variant measured and logged, the servable models logged
(the int8 one when asked), the table artifact, and N:M runs checked for their pattern."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from support import cli_dirs, run_cli

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
