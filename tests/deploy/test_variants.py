"""ONNX export, int8 quantization and the per-variant measurements of the deployable model."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from bn_models import trained_looking

from framework.analysis.cost import export_onnx, onnx_session, run_onnx
from framework.deploy.errors import DeployError
from framework.deploy.quantize import quantize_int8
from framework.deploy.variants import build_deployable, variants_markdown
from framework.models import SimpleCNN

ROOT = Path(__file__).resolve().parents[2]


def batches(count: int, size: int = 16, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 1, 8, 8, generator=generator), torch.randint(0, 10, (size,), generator=generator))
        for _ in range(count)
    ]


def labelled_by(model, data):
    """The same inputs labelled by ``model`` itself: its top-1 is 1 by construction."""
    with torch.no_grad():
        return [(x, model.eval()(x).argmax(1)) for x, _ in data]


def test_int8_model_is_per_channel_qdq_and_predicts_like_fp32(tmp_path):
    model = trained_looking(SimpleCNN(num_classes=10, in_channels=1)).eval()
    fp32 = export_onnx(model, (1, 8, 8), tmp_path / "fp32.onnx")
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", (x.numpy() for x, _ in batches(4)))
    graph = onnx.load(str(int8)).graph
    ops = [node.op_type for node in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # per-channel: the first conv's weight scale has one entry per output channel
    scales = {init.name: init for init in graph.initializer}
    weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and "weight" in n.input[0]]
    assert weight_dq and any(len(scales[n.input[1]].dims) == 1 and scales[n.input[1]].dims[0] > 1 for n in weight_dq)
    assert int8.stat().st_size < fp32.stat().st_size / 2
    inputs = torch.cat([x for x, _ in batches(4, seed=7)])
    agree = (run_onnx(onnx_session(int8), inputs).argmax(1) == model(inputs).argmax(1)).float().mean()
    assert agree >= 0.8


def test_calibration_without_batches_is_refused(tmp_path):
    model = SimpleCNN(num_classes=10, in_channels=1).eval()
    fp32 = export_onnx(model, (1, 8, 8), tmp_path / "fp32.onnx")
    with pytest.raises(DeployError, match="calibration got no batch"):
        quantize_int8(fp32, tmp_path / "int8.onnx", [])


def test_the_deploy_step_refuses_a_quantization_with_the_config_check_s_line(tmp_path):
    from framework.deploy.rules import quantize_problem

    model = SimpleCNN(num_classes=10, in_channels=1).eval()
    with pytest.raises(DeployError) as error:
        build_deployable(model, (1, 8, 8), tmp_path / "deploy", batches(1), quantize="fp16")
    assert str(error.value) == quantize_problem("fp16")
    assert "deploy.quantize='fp16' is invalid; allowed: none | int8" == str(error.value)
    assert not (tmp_path / "deploy").exists()  # refused before anything is written


def test_every_variant_is_measured_and_tabled(tmp_path):
    dense = trained_looking(SimpleCNN(num_classes=10, in_channels=1)).eval()
    thinned = trained_looking(SimpleCNN(num_classes=10, in_channels=1, width=0.5), seed=2).eval()
    val = labelled_by(thinned, batches(3, seed=5))
    result = build_deployable(
        thinned,
        (1, 8, 8),
        tmp_path,
        val,
        calibration_batches=[x for x, _ in batches(2)],
        dense_model=dense,
        quantize="int8",
        loader_batch=16,
        timing=(1, 2),
    )
    names = [row["variant"] for row in result.rows]
    assert names == ["dense_fp32", "thinned_fp32", "fused_fp32", "fused_onnx_fp32", "int8_onnx"]
    m = result.metrics
    assert (
        m["deploy/val_top1/thinned_fp32"]
        == m["deploy/val_top1/fused_fp32"]
        == m["deploy/val_top1/fused_onnx_fp32"]
        == 1.0
    )
    assert m["deploy/val_top1/dense_fp32"] < 1.0  # another model: not the labeller
    assert m["deploy/fused_max_error"] <= 1e-5
    for name in names:
        assert (
            m[f"deploy/latency_ms_b1/{name}"] > 0
            and m[f"deploy/latency_ms_b16/{name}"] > 0
            and m[f"deploy/bytes/{name}"] > 0
        )
    assert m["deploy/bytes/int8_onnx"] < m["deploy/bytes/fused_onnx_fp32"] < m["deploy/bytes/dense_fp32"]
    assert m["deploy/int8_top1_drop"] == pytest.approx(1.0 - m["deploy/val_top1/int8_onnx"])
    with (tmp_path / "variants.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [row["variant"] for row in table] == names
    assert float(table[3]["val_top1"]) == 1.0
    assert variants_markdown(result.rows).count("\n") == 2 + len(names)
    assert result.onnx_path.is_file() and result.int8_path.is_file()


def test_a_dense_run_without_int8_has_two_variants(tmp_path):
    model = trained_looking(SimpleCNN(num_classes=10, in_channels=1))
    result = build_deployable(model, (1, 8, 8), tmp_path, labelled_by(model, batches(2)), loader_batch=8, timing=(0, 1))
    assert [row["variant"] for row in result.rows] == ["dense_fp32", "fused_fp32", "fused_onnx_fp32"]
    assert result.metrics["deploy/val_top1/dense_fp32"] == result.metrics["deploy/val_top1/fused_onnx_fp32"] == 1.0
    assert result.int8_path is None and not (tmp_path / "model_int8.onnx").exists()


def test_missing_onnxruntime_names_the_extra(tmp_path):
    hide = (  # a None entry in sys.modules is how Python marks a module that cannot be imported
        "import sys\n"
        "sys.modules['onnxruntime'] = None\n"
        "from framework.deploy.errors import DeployError, require_onnxruntime\n"
        "try:\n    require_onnxruntime('deploy.quantize=int8')\n"
        "except DeployError as e:\n    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", hide], capture_output=True, text=True, env=env, cwd=tmp_path, check=True
    )
    assert out.stdout.strip() == (
        "deploy.quantize=int8 needs onnxruntime, which is not installed; "
        "install the 'onnx' extra: pip install 'secateurs[onnx]'"
    )


def test_a_thinned_model_whose_dense_one_was_measured_earlier(tmp_path):
    model = trained_looking(SimpleCNN(num_classes=10, in_channels=1, width=0.5))
    earlier = {"val_top1": 0.5, "bytes": 1234.0, "ms_b1": 0.7, "ms_batch": 2.5}
    result = build_deployable(
        model,
        (1, 8, 8),
        tmp_path,
        labelled_by(model, batches(2)),
        dense_measured=earlier,
        loader_batch=8,
        timing=(0, 1),
    )
    assert [row["variant"] for row in result.rows] == ["dense_fp32", "thinned_fp32", "fused_fp32", "fused_onnx_fp32"]
    m = result.metrics
    assert (
        m["deploy/val_top1/dense_fp32"],
        m["deploy/bytes/dense_fp32"],
        m["deploy/latency_ms_b1/dense_fp32"],
        m["deploy/latency_ms_b8/dense_fp32"],
    ) == (0.5, 1234.0, 0.7, 2.5)
    assert m["deploy/val_top1/thinned_fp32"] == 1.0
