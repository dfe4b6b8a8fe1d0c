"""Latency tables measured on this machine (framework.deploy.latency_measure): their shape, the
widths their axes predict, ONNX runtimes and the cache."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch import nn

from framework.deploy.latency_cache import cached_latency_table
from framework.deploy.latency_measure import build_latency_table, model_at_widths
from framework.pruning.budget.latency_table import LatencyTable, measured_widths

SHAPE = (3, 10, 10)
FAST = dict(max_points=4, warmup=0, repeats=1)


class TinyNet(nn.Module):
    """A stem, a residual block, a depthwise-separable pair and a classifier after a flatten."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.conv1 = nn.Conv2d(width, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, width, 3, padding=1)
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.pointwise = nn.Conv2d(width, 12, 1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(12 * 4, 5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.conv2(torch.relu(self.conv1(x)))
        x = torch.relu(self.pointwise(torch.relu(self.depthwise(x))))
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture(scope="module")
def eager_table():
    torch.manual_seed(0)
    return TinyNet(), build_latency_table(TinyNet(), SHAPE, runtime="eager", threads=1, **FAST)


def test_the_table_has_a_curve_per_layer_side_at_every_measured_width(eager_table):
    _, table = eager_table
    # the residual stream (stem, conv2, depthwise), conv1's output, pointwise's output
    assert sorted((g.name, g.full) for g in table.groups.values()) == [("conv1", 6), ("conv2", 8), ("pointwise", 12)]
    for group in table.groups.values():
        assert group.widths == measured_widths(group.full, 4)
    assert [layer.module for layer in table.layers] == ["stem.0", "conv1", "conv2", "depthwise", "pointwise", "fc"]
    for layer in table.layers:
        for axis, curve in ((layer.in_axis, layer.in_curve), (layer.out_axis, layer.out_curve)):
            if axis.group is not None:
                assert sorted(curve) == list(table.groups[axis.group].widths)
                assert curve[table.groups[axis.group].full] == layer.full_ms
            assert all(t > 0 for t in curve.values())
    depthwise = next(layer for layer in table.layers if layer.module == "depthwise")
    assert depthwise.in_axis.group == depthwise.out_axis.group == "conv2"
    fc = next(layer for layer in table.layers if layer.module == "fc")
    assert (fc.in_axis.group, fc.in_axis.per_channel) == ("pointwise", 4)  # a flatten: 2x2 columns per channel
    assert table.model_ms > 0 and [f for f, _ in table.calibration] == [1.0, 0.6, 0.3]
    assert table.predict() == pytest.approx(table.layers_ms + table.rest_fixed_ms + table.rest_volume_ms)
    assert table.machine["threads"] == 1 and table.machine["cpu"]


def test_the_axes_give_the_widths_the_thinned_model_has(eager_table):
    model, table = eager_table
    widths = {"conv2": 3, "conv1": 2, "pointwise": 9}
    thinned = dict(model_at_widths(model, widths, torch.zeros(1, *SHAPE)).named_modules())
    for layer in table.layers:
        module = thinned[layer.module]
        got = (
            (module.in_channels, module.out_channels)
            if hasattr(module, "in_channels")
            else (
                module.in_features,
                module.out_features,
            )
        )
        want = tuple(
            axis.width(widths.get(axis.group), table.groups[axis.group].full if axis.group else None)
            for axis in (layer.in_axis, layer.out_axis)
        )
        assert got == want, layer.module


def test_onnx_int8_times_every_layer_in_onnx_runtime():
    table = build_latency_table(TinyNet(), SHAPE, runtime="onnx_int8", threads=1, **FAST)
    assert table.runtime == "onnx_int8" and table.machine["onnxruntime"]
    assert len(table.layers) == 6 and all(layer.full_ms > 0 for layer in table.layers)


@pytest.mark.parametrize(
    "layer, shape", [(nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (1, 4, 9, 9)), (nn.Linear(5, 3), (2, 7, 5))]
)
def test_a_layer_written_as_onnx_computes_what_torch_computes(layer, shape, tmp_path):
    import onnxruntime as ort

    from framework.deploy.layer_onnx import write_layer_onnx

    inputs = torch.randn(shape)
    path = write_layer_onnx(layer, shape, tmp_path / "layer.onnx", int8=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": inputs.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), layer(inputs).detach(), rtol=1e-5, atol=1e-5)


def test_a_table_is_cached_and_a_stale_one_rebuilt_with_the_reason(tmp_path, caplog):
    model = TinyNet()
    first = cached_latency_table(model, SHAPE, tmp_path, "tiny", threads=1, **FAST)
    assert first.status == "measured" and first.path.is_file()
    again = cached_latency_table(model, SHAPE, tmp_path, "tiny", threads=1, **FAST)
    assert again.status == "cached" and again.table == first.table

    stored = json.loads(first.path.read_text())
    stored["machine"]["cpu"] = "Another CPU"
    first.path.write_text(json.dumps(stored))
    with caplog.at_level(logging.WARNING):
        rebuilt = cached_latency_table(model, SHAPE, tmp_path, "tiny", threads=1, **FAST)
    assert rebuilt.status == "rebuilt" and "'Another CPU'" in rebuilt.reason
    assert "stale" in caplog.text and "Another CPU" in caplog.text
    assert LatencyTable.load(first.path).machine["cpu"] != "Another CPU"

    wider = cached_latency_table(TinyNet(width=10), SHAPE, tmp_path, "tiny", threads=1, **FAST)
    assert wider.status == "rebuilt" and "layers or widths differ" in wider.reason


def test_the_mac_table_counts_what_the_flop_counter_counts_at_any_widths():
    from framework.analysis.cost import count_macs
    from framework.deploy.mac_table import mac_table

    model = TinyNet()
    table = mac_table(model, SHAPE)
    assert table.unit == "MMAC" and table.predict() == pytest.approx(count_macs(model, SHAPE) / 1e6)
    for widths in ({"conv2": 3, "conv1": 2, "pointwise": 9},):
        thinned = model_at_widths(model, widths, torch.zeros(1, *SHAPE))
        assert table.predict(widths) == pytest.approx(count_macs(thinned, SHAPE) / 1e6), widths


def test_the_table_is_drawn_one_panel_per_group(eager_table, tmp_path):
    from framework.analysis.latency_plots import plot_latency_table

    _, table = eager_table
    path = plot_latency_table(table, tmp_path / "latency.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
