"""1-D convolutions through every path, in float64: coupled groups (BatchNorm1d, a residual add),
thinned == masked, BatchNorm1d-folded ranking, BN fusion, ONNX and int8 deploy, MACs."""

from __future__ import annotations

import pytest
import torch
from coupling_support import (  # noqa: F401 (one_thread is an autouse fixture)
    assert_groups_consistent,
    kept_parameter_count,
    one_thread,
    outputs,
    prune,
    randomise_norms,
    relative_error,
)
from torch import nn

from framework.analysis.cost import count_macs
from framework.deploy.fuse import check_fused_matches, count_batchnorms, fuse_batchnorm
from framework.models import Conv1dNet
from framework.pruning.graph.groups import NORM
from framework.pruning.thinning.thin import thin


class Residual1d(nn.Module):
    """A stem and two 1-D residual blocks whose outputs are added: one coupled group spans the
    stem, both blocks' second convs and their BatchNorm1d."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(2, 12, 5, padding=2, bias=False), nn.BatchNorm1d(12), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(12, 8, 3, padding=1, bias=False),
                nn.BatchNorm1d(8),
                nn.ReLU(),
                nn.Conv1d(8, 12, 3, padding=1, bias=False),
                nn.BatchNorm1d(12),
            )
            for _ in range(2)
        )
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = torch.relu(x + block(x))
        return self.head(x.mean(-1))


MODELS = {
    "conv1d_net": (lambda: Conv1dNet(num_classes=10, in_channels=1), (3, 1, 40)),
    "residual1d": (Residual1d, (3, 2, 24)),
}


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    builder, shape = MODELS[name]
    return randomise_norms(builder().double(), seed), torch.randn(shape, dtype=torch.float64)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("structure", ["filter", "channel"])
def test_thinned_1d_model_equals_the_masked_one_in_float64(name, structure):
    model, x = build(name)
    widths = [m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    pruner = prune(model, x, structure, 0.5)
    zero_channels = assert_groups_consistent(model, pruner.graph)
    masked = outputs(model, x)
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    assert relative_error(masked, outputs(result.model, x)) <= 1e-10 and result.max_error <= 1e-10
    assert sum(p.numel() for p in result.model.parameters()) == kept_parameter_count(model, pruner.masks)
    assert result.removed_channels == zero_channels > 0
    thinned_widths = [m.num_features for m in result.model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(thinned_widths) == len(widths) and sum(thinned_widths) < sum(widths)


def test_residual_add_couples_the_stem_both_blocks_and_their_batchnorm1d():
    model, x = build("residual1d")
    pruner = prune(model, x, "filter", 0.5)
    residual = [
        channel
        for channel in pruner.graph.channels()
        if {m.module for m in channel.members} >= {"stem.0", "blocks.0.3", "blocks.1.3"}
    ]
    assert len(residual) == 12  # one coupled channel per stream channel
    members = {(m.module, m.role) for m in residual[0].members}
    assert {("stem.1", NORM), ("blocks.0.4", NORM), ("blocks.1.4", NORM)} <= members
    stream_kept = int(model.stem[0].weight.detach().flatten(1).abs().sum(1).ne(0).sum())
    assert stream_kept == 6
    for block in model.blocks:  # every partner keeps exactly the same channels
        assert torch.equal(
            block[3].weight.detach().flatten(1).abs().sum(1).ne(0),
            model.stem[0].weight.detach().flatten(1).abs().sum(1).ne(0),
        )


def test_batchnorm1d_folded_ranking_removes_the_smallest_folded_filters():
    model, x = build("conv1d_net", seed=3)
    conv, bn = model.features[1][0], model.features[1][1]
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    folded_norms = (conv.weight.detach() * scale.view(-1, 1, 1)).flatten(1).abs().mean(1)
    raw_norms = conv.weight.detach().flatten(1).abs().mean(1)
    folded_drop = set(torch.argsort(folded_norms)[:32].tolist())
    assert folded_drop != set(torch.argsort(raw_norms)[:32].tolist())  # folding changes the ranking here
    pruner = prune(model, x, "filter", 0.5, coupling="layer", fold_batchnorm=True)
    pruned = set(torch.nonzero(conv.weight.detach().flatten(1).abs().sum(1) == 0).flatten().tolist())
    assert pruned == folded_drop
    assert ("features.1.0", "features.1.1") in {(p.layer_name, p.bn_name) for p in pruner.fold_pairs}


def test_batchnorm1d_fuses_into_conv1d_and_the_1d_model_deploys_to_onnx_and_int8(tmp_path):
    from framework.deploy.variants import build_deployable

    model, _ = build("conv1d_net")
    model = model.float().eval()
    fused = fuse_batchnorm(model)
    assert count_batchnorms(model) == 4 and count_batchnorms(fused) == 0
    generator = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(16, 1, 40, generator=generator), torch.randint(0, 10, (16,), generator=generator))
        for _ in range(2)
    ]
    assert check_fused_matches(model, fused, data[0][0]) <= 1e-5
    double = fuse_batchnorm(model.double())
    assert relative_error(outputs(model, data[0][0].double()), outputs(double, data[0][0].double())) <= 1e-12
    model.float()
    result = build_deployable(
        model,
        (1, 40),
        tmp_path,
        data,
        calibration_batches=[x for x, _ in data],
        quantize="int8",
        loader_batch=16,
        timing=(1, 2),
    )
    assert [row["variant"] for row in result.rows] == ["dense_fp32", "fused_fp32", "fused_onnx_fp32", "int8_onnx"]
    assert result.metrics["deploy/fused_max_error"] <= 1e-5
    assert result.metrics["deploy/bytes/int8_onnx"] < result.metrics["deploy/bytes/fused_onnx_fp32"]
    assert result.int8_path.is_file()


def test_macs_of_a_1d_convnet_follow_the_formula():
    model = Conv1dNet(num_classes=10, in_channels=1)
    expected, channels, length = 0, 1, 40
    for out_channels, kernel, stride in ((32, 5, 1), (64, 3, 2), (64, 3, 2), (128, 3, 2)):
        length = (length + 2 * (kernel // 2) - kernel) // stride + 1
        expected += out_channels * length * channels * kernel
        channels = out_channels
    expected += 128 * 10
    assert count_macs(model, (1, 40)) == expected
