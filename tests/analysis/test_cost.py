"""Measured cost: parameters, MACs, eager and ONNX Runtime latency, file sizes, the thin/ report."""

import math

import pytest
import torch
from torch import nn

from framework.analysis.cost import (
    MeasurementError,
    check_onnx_matches,
    cost_report,
    count_macs,
    count_params,
    export_onnx,
    file_bytes,
    latency_samples,
    macs_by_module,
    measure_latency,
    onnx_latency,
    onnx_session,
    run_onnx,
    state_dict_bytes,
    summarize,
)


def conv_bn_linear(width: int = 8) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 5),
    )


def test_macs_of_a_conv_and_a_linear_by_hand():
    model = conv_bn_linear(8)
    conv = 8 * 6 * 6 * 3 * 3 * 3  # output elements * in_channels * kernel = 7776
    linear = 5 * 8
    assert count_macs(model, (3, 6, 6)) == conv + linear
    assert count_macs(model, (3, 6, 6), batch_size=4) == 4 * (conv + linear)
    assert macs_by_module(model, (3, 6, 6)) == {"0": conv, "5": linear}
    # a depthwise conv: each output element sees one input channel
    assert count_macs(nn.Conv2d(4, 4, 3, groups=4, bias=False), (4, 5, 5)) == 4 * 3 * 3 * 9


def test_params_count_shared_once_and_skip_buffers():
    model = conv_bn_linear(8)
    expected = (8 * 27 + 8) + (8 + 8) + (5 * 8 + 5)  # conv, BN gamma/beta (not running stats), linear
    assert count_params(model) == expected
    shared = nn.Sequential(model[5], model[5])
    assert count_params(shared) == 5 * 8 + 5


def test_state_dict_bytes_grow_with_the_weights():
    small, large = state_dict_bytes(conv_bn_linear(4)), state_dict_bytes(conv_bn_linear(64))
    # 4 bytes per float32 element, plus the zip container's overhead
    assert large - small >= 4 * (count_params(conv_bn_linear(64)) - count_params(conv_bn_linear(4)))


def test_latency_is_positive_for_every_model_and_batch_and_restores_state():
    small, large = conv_bn_linear(4), conv_bn_linear(64)
    large.train()
    before_threads = torch.get_num_threads()
    timing = measure_latency(
        {"small": small, "large": large}, (3, 16, 16), batch_sizes=(1, 8), warmup=1, repeats=3, threads=1
    )
    assert set(timing) == {"small", "large"}
    assert all(set(per_batch) == {1, 8} for per_batch in timing.values())
    assert all(seconds > 0 for per_batch in timing.values() for seconds in per_batch.values())
    assert large.training and torch.get_num_threads() == before_threads
    assert large[1].num_batches_tracked.item() == 0  # ran in eval mode: BN statistics untouched


def test_samples_are_interleaved_repeats_and_summarize_takes_quantiles():
    samples = latency_samples({"a": conv_bn_linear(4), "b": conv_bn_linear(8)}, (3, 8, 8), (1, 2), warmup=0, repeats=4)
    assert {name: {b: len(v) for b, v in per.items()} for name, per in samples.items()} == {
        "a": {1: 4, 2: 4},
        "b": {1: 4, 2: 4},
    }
    fixed = {"m": {1: [4.0, 1.0, 3.0, 2.0]}}
    assert summarize(fixed) == {"m": {1: 2.5}}  # the median of an even count: mean of the middle two
    assert summarize(fixed, 0.0) == {"m": {1: 1.0}} and summarize(fixed, 1.0) == {"m": {1: 4.0}}
    assert summarize(fixed, 0.1)["m"][1] == pytest.approx(1.3)  # 0.1 * 3 = 0.3 of the way from 1 to 2
    with pytest.raises(MeasurementError, match=r"quantile must be within \[0, 1\]; got 50"):
        summarize(fixed, 50)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_sizes": (0,)}, r"batch_sizes must be integers >= 1.*\(0,\)"),
        ({"repeats": 0}, r"repeats must be an integer >= 1; got 0"),
        ({"threads": 0}, r"threads must be an integer >= 1; got 0"),
    ],
)
def test_bad_measurement_arguments_are_one_line(kwargs, message):
    with pytest.raises(MeasurementError, match=message):
        measure_latency({"m": conv_bn_linear()}, (3, 4, 4), **kwargs)


def test_sample_shape_with_a_batch_dimension_mistake_is_one_line():
    with pytest.raises(MeasurementError, match=r"sample_shape .* got \(3, 0, 4\)"):
        count_macs(conv_bn_linear(), (3, 0, 4))


def test_onnx_round_trip_equals_eager_with_a_dynamic_batch(tmp_path):
    model = conv_bn_linear(8)
    with torch.no_grad():  # non-trivial BN statistics so that eval mode matters
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    path = export_onnx(model, (3, 8, 8), tmp_path / "sub" / "model.onnx")
    assert file_bytes(path) > 4 * count_params(model)
    session = onnx_session(path, threads=1)
    for batch in (1, 5):
        inputs = torch.randn(batch, 3, 8, 8)
        with torch.no_grad():
            expected = model.eval()(inputs)
        assert torch.allclose(run_onnx(session, inputs), expected, atol=1e-5)
    assert check_onnx_matches(model, session, (3, 8, 8)) <= 1e-4


def test_onnx_mismatch_is_reported(tmp_path):
    model = conv_bn_linear(8)
    session = onnx_session(export_onnx(model, (3, 8, 8), tmp_path / "model.onnx"))
    with torch.no_grad():
        model[5].bias += 1.0  # the eager model no longer matches what was exported
    with pytest.raises(MeasurementError, match=r"differs from eager PyTorch by 1 \(allowed: <= 0.0001\)"):
        check_onnx_matches(model, session, (3, 8, 8))


def test_onnx_latency_interleaves_sessions(tmp_path):
    sessions = {
        name: onnx_session(export_onnx(conv_bn_linear(width), (3, 8, 8), tmp_path / f"{name}.onnx"))
        for name, width in (("a", 4), ("b", 16))
    }
    timing = onnx_latency(sessions, (3, 8, 8), batch_sizes=(1, 4), warmup=1, repeats=3)
    assert {name: sorted(per_batch) for name, per_batch in timing.items()} == {"a": [1, 4], "b": [1, 4]}
    assert all(seconds > 0 for per_batch in timing.values() for seconds in per_batch.values())


def test_cost_report_dense_vs_smaller(tmp_path):
    dense, smaller = conv_bn_linear(16), conv_bn_linear(8)
    metrics = cost_report(dense, smaller, (3, 8, 8), batch=4, warmup=1, repeats=3, onnx_dir=tmp_path)
    assert metrics["thin/params/dense"] == count_params(dense)
    assert metrics["thin/params/thinned"] == count_params(smaller)
    assert metrics["thin/params_ratio"] == pytest.approx(count_params(smaller) / count_params(dense))
    assert metrics["thin/macs/dense"] == 16 * 64 * 27 + 5 * 16
    assert metrics["thin/macs_reduction"] == pytest.approx((16 * 64 * 27 + 80) / (8 * 64 * 27 + 40))
    for runtime in ("eager", "onnx"):
        for batch in (1, 4):
            dense_ms = metrics[f"thin/{runtime}_ms_b{batch}/dense"]
            thinned_ms = metrics[f"thin/{runtime}_ms_b{batch}/thinned"]
            assert dense_ms > 0 and thinned_ms > 0
            assert metrics[f"thin/{runtime}_speedup_b{batch}"] == pytest.approx(dense_ms / thinned_ms)
    assert metrics["thin/onnx_bytes/dense"] == file_bytes(tmp_path / "dense.onnx")
    assert metrics["thin/state_dict_bytes/dense"] > metrics["thin/state_dict_bytes/thinned"]
    assert max(metrics["thin/onnx_max_abs_error/dense"], metrics["thin/onnx_max_abs_error/thinned"]) <= 1e-4
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in metrics.values())


def test_cost_report_without_onnx_has_no_onnx_metrics():
    metrics = cost_report(conv_bn_linear(8), conv_bn_linear(4), (3, 4, 4), batch=1, warmup=0, repeats=1)
    assert not [name for name in metrics if "onnx" in name]
    assert {"thin/eager_ms_b1/dense", "thin/eager_speedup_b1"} <= set(metrics)


def test_thinned_resnet_costs_what_its_layers_say(tmp_path):
    """A real coupled 50 % filter pruning + thin of a CIFAR ResNet-8 (shortcut B): the counter's MACs
    equal the conv/linear formula over the thinned layers, and the report sees the drop."""
    from framework.models.cifar_resnet import CifarResNet
    from framework.pruning import build_pruner
    from framework.pruning.thinning.thin import thin

    torch.manual_seed(0)
    model = CifarResNet(8, 10, shortcut="B").eval()
    example = torch.randn(2, 3, 16, 16)
    pruner = build_pruner(
        model, method="level", structure="filter", final_sparsity=0.5, coupling="coupled", example_input=example
    )
    pruner.on_epoch_start(0)
    pruner.apply_masks()
    thinned = thin(model, pruner.masks, example).model

    def formula(net: nn.Module) -> int:  # output elements * in/groups * kernel, per call
        total = 0

        def hook(layer, args, output):
            nonlocal total
            if isinstance(layer, nn.Conv2d):
                total += (
                    output.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
                )
            else:
                total += output.numel() * layer.in_features

        handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            net(torch.zeros(1, 3, 16, 16))
        for handle in handles:
            handle.remove()
        return total

    assert count_macs(thinned, (3, 16, 16)) == formula(thinned) < count_macs(model, (3, 16, 16)) / 3
    metrics = cost_report(model, thinned, (3, 16, 16), batch=2, warmup=0, repeats=1, onnx_dir=tmp_path)
    assert metrics["thin/macs/thinned"] == formula(thinned) and metrics["thin/macs/dense"] == formula(model)
    assert metrics["thin/params/thinned"] == count_params(thinned) < count_params(model) / 3
    assert metrics["thin/onnx_bytes/thinned"] < metrics["thin/onnx_bytes/dense"]
