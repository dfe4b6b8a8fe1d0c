"""Dependency groups and coupled masks on small hand-built models (float64, real tensors)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from coupling_support import (  # noqa: F401 (one_thread is an autouse fixture)
    IN,
    NORM,
    OUT,
    assert_groups_consistent,
    kept_parameter_count,
    one_thread,
    outputs,
    prune,
    randomise_norms,
    relative_error,
)
from torch import nn

from framework.errors import PruningError
from framework.pruning import build_pruner
from framework.pruning.graph.dependency import build_dependency_graph
from framework.pruning.thinning.thin import thin


def check_exact(model, x, structure="filter", sparsity=0.5, **kwargs):
    """Prune coupled, check the groups, thin, and check thinned == masked (returns pruner, result)."""
    randomise_norms(model)
    pruner = prune(model, x, structure, sparsity, **kwargs)
    assert assert_groups_consistent(model, pruner.graph) > 0
    masked = outputs(model, x)
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    assert relative_error(masked, outputs(result.model, x)) <= 1e-10
    assert sum(p.numel() for p in result.model.parameters()) == kept_parameter_count(model, pruner.masks)
    assert type(result.model) is type(model)
    return pruner, result


def channel_with(graph, module, role, index):
    return next(
        c
        for c in graph.channels()
        if any(m.module == module and m.role == role and index in m.indices for m in c.members)
    )


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("structure", ["filter", "channel"])
def test_conv_bn_relu_conv_removes_filter_bn_channel_and_reader_together(padding, structure):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=padding), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=padding)
    ).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    pruner, result = check_exact(model, x, structure)
    channel = channel_with(pruner.graph, "0", OUT, 0)
    assert {(m.module, m.role) for m in channel.members} == {("0", OUT), ("1", NORM), ("3", IN)}
    # the final conv's filters are the model's output: fixed
    assert channel_with(pruner.graph, "3", OUT, 0).fixed
    thinned = result.model
    assert (thinned[0].out_channels, thinned[1].num_features, thinned[3].in_channels) == (4, 4, 4)
    # the masks also zeroed the removed channels' bias and BN gamma/beta
    dead = ~pruner.masks["0.bias"]
    assert int(dead.sum()) == 4
    assert model[0].bias[dead].eq(0).all() and model[1].weight[dead].eq(0).all() and model[1].bias[dead].eq(0).all()


def test_without_bn_masking_a_zeroed_filter_would_leak_relu_beta():
    """Why γ/β are masked: the same filters zeroed per layer leave ReLU(β) flowing on."""
    torch.manual_seed(0)
    model = randomise_norms(
        nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3)).double()
    )
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    layer = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=0.5,
        ending_epoch=1,
        weights=["0.weight"],
        coupling="layer",
    )
    layer.on_epoch_start(0)
    zeroed = ~layer.masks["0.weight"].reshape(8, -1).any(1)
    activations = model[:3](x)
    assert activations[:, zeroed].abs().sum() > 0  # ReLU(β) still reaches the next conv


def test_global_pool_into_linear():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)
    ).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    _, result = check_exact(model, x)
    assert result.model[5].in_features == 4 and result.model[5].out_features == 5


class FlattenIntoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(x.view(x.size(0), -1))


def test_flatten_of_a_4x4_map_couples_each_channel_with_its_16_columns():
    torch.manual_seed(0)
    model = FlattenIntoLinear().double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    pruner, result = check_exact(model, x)
    channel = channel_with(pruner.graph, "conv", OUT, 2)
    (reader,) = channel.of(IN)
    assert reader.module == "fc" and reader.indices == tuple(range(32, 48))
    assert result.model.fc.in_features == 3 * 16


class ConstantView(nn.Module):
    """``view(-1, 96)``: the 96 is fixed in the code, so the channels before it must stay."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)
        self.fc = nn.Linear(96, 3)

    def forward(self, x):
        return self.fc(self.conv(x).view(-1, 96))


def test_view_with_a_constant_size_fixes_the_channels_with_a_warning():
    model = ConstantView()
    with pytest.warns(UserWarning, match=r"view.*layers that keep those channels: conv, fc"):
        with pytest.raises(PruningError, match="finds no channel of the selected layers that can be removed"):
            build_pruner(model, method="level", structure="filter", example_input=torch.randn(2, 2, 4, 4))


class UnequalSplit(nn.Module):
    """A tensor split into 3 + 5 channels, each part read by its own conv, the results added."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.left = nn.Conv2d(3, 6, 3, padding=1)
        self.right = nn.Conv2d(5, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        a, b = torch.split(self.stem(x), [3, 5], dim=1)
        return self.head(F.relu(self.left(a) + self.right(b)))


def test_unequal_split_keeps_the_split_tensor_and_prunes_the_branches_together():
    torch.manual_seed(0)
    model = UnequalSplit().double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"split\(\).*split sizes are fixed.*stem"):
        pruner, result = check_exact(model, x)
    assert result.model.stem.out_channels == 8  # split sizes 3 + 5 are constants in forward
    assert result.model.left.in_channels == 3 and result.model.right.in_channels == 5
    # the residual add couples filter i of both branches
    channel = channel_with(pruner.graph, "left", OUT, 1)
    assert {m.module for m in channel.of(OUT)} == {"left", "right"}
    assert result.model.left.out_channels == result.model.right.out_channels == result.model.head.in_channels == 3


class Halves(nn.Module):
    """torch.chunk into two halves: the halves are computed at run time, so they can shrink."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.left = nn.Conv2d(4, 4, 1)
        self.right = nn.Conv2d(4, 4, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        a, b = self.stem(x).chunk(2, dim=1)
        return self.head(torch.cat([self.left(a), self.right(b)], dim=1))


def test_chunk_couples_matching_positions_and_cat_keeps_offsets():
    torch.manual_seed(0)
    model = Halves().double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    pruner, result = check_exact(model, x)
    assert channel_with(pruner.graph, "stem", OUT, 1) is channel_with(pruner.graph, "stem", OUT, 5)
    assert channel_with(pruner.graph, "head", IN, 6) is channel_with(pruner.graph, "right", OUT, 2)
    assert result.model.stem.out_channels == 4 and result.model.head.in_channels == 4


def test_grouped_conv_with_4_groups_loses_the_same_count_in_every_group():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, groups=4),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 4, 1),
    ).double()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    pruner, result = check_exact(model, x)
    # input position p of every group is one channel
    assert {m.indices for m in channel_with(pruner.graph, "3", IN, 1).of(IN)} == {(1, 5, 9, 13)}
    grouped = result.model[3]
    assert grouped.groups == 4 and grouped.in_channels == 8 and grouped.out_channels == 8
    grouped(torch.randn(1, 8, 5, 5, dtype=torch.float64))  # a valid layer


def test_conv_with_one_output_channel_keeps_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 1, 3), nn.BatchNorm2d(1), nn.ReLU(), nn.Conv2d(1, 4, 3)).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.warns(UserWarning, match="asks to remove all 1"):
        pruner = prune(randomise_norms(model), x, sparsity=0.9)
    assert model[0].weight.ne(0).all() and "0.weight" not in pruner.masks
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    assert result.model[0].out_channels == 1 and result.removed_channels == 0


@pytest.mark.parametrize("coupling", ["coupled", "layer"])
@pytest.mark.parametrize("sparsity", [0.97, 0.99])
def test_level_filter_097_keeps_at_least_one_of_32_filters(coupling, sparsity):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=sparsity,
        ending_epoch=1,
        weights=["0.weight"] if coupling == "layer" else None,
        coupling=coupling,
        input_shape=(3, 8, 8),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner.on_epoch_start(0)
    # 0.97 * 32 = 31.04 -> 31 filters go; 0.99 * 32 rounds to all 32, which is capped with a warning
    assert [("asks to remove all 32" in str(w.message)) for w in caught] == ([True] if sparsity == 0.99 else [])
    kept = int(model[0].weight.reshape(32, -1).ne(0).any(1).sum())
    assert kept == 1
    assert model(torch.randn(2, 3, 8, 8)).std(0).sum() > 0  # the output still depends on the input


def test_bn_without_affine_is_exact_because_readers_are_masked():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, affine=False), nn.ReLU(), nn.Conv2d(8, 4, 3)).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    pruner, result = check_exact(model, x)
    assert result.model[1].num_features == 4 and result.model[1].running_mean.shape == (4,)


class ShuffleNetBlock(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.op = op
        self.conv2 = nn.Conv2d(8 if isinstance(op, nn.ChannelShuffle) else 2, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.conv3(F.relu(self.conv2(self.op(F.relu(self.conv1(x))))))


@pytest.mark.parametrize("op", [nn.ChannelShuffle(2), nn.PixelShuffle(2)], ids=["channel_shuffle", "pixel_shuffle"])
def test_unknown_op_warns_and_leaves_its_channels_untouched(op):
    torch.manual_seed(0)
    model = ShuffleNetBlock(op).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with pytest.warns(UserWarning, match=rf"{type(op).__name__} 'op'.*not known.*conv1, conv2"):
        pruner, result = check_exact(model, x)
    assert pruner.masks.get("conv1.weight") is None or pruner.masks["conv1.weight"].all()
    assert result.model.conv1.out_channels == 8 and result.model.conv2.in_channels == model.conv2.in_channels
    assert result.model.conv2.out_channels == 4  # after the unknown op, pruning goes on


def test_input_planes_and_output_classes_are_fixed():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 5, 1))
    graph = build_dependency_graph(model, torch.randn(1, 3, 6, 6))
    assert channel_with(graph, "0", IN, 0).fixed and channel_with(graph, "2", OUT, 4).fixed
    assert not channel_with(graph, "0", OUT, 0).fixed


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        if x.sum() > 0:  # control flow on a tensor value
            return self.conv(x)
        return x


def test_untraceable_model_is_one_line():
    with pytest.raises(PruningError, match=r"could not trace Untraceable") as error:
        build_pruner(Untraceable(), method="level", structure="filter", input_shape=(3, 4, 4))
    assert "\n" not in str(error.value)


def test_wrong_example_input_is_one_line():
    model = FlattenIntoLinear()
    with pytest.raises(PruningError, match=r"example input of shape \[\(2, 2, 5, 5\)\]") as error:
        build_pruner(model, method="level", structure="filter", input_shape=(2, 5, 5))
    assert "\n" not in str(error.value)


def test_round_to_keeps_multiples_and_options_are_validated():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 4, 1))
    pruner = build_pruner(
        model, method="level", structure="filter", final_sparsity=0.3, ending_epoch=1, round_to=8, input_shape=(3, 6, 6)
    )
    pruner.on_epoch_start(0)
    assert int(model[0].weight.reshape(32, -1).ne(0).any(1).sum()) == 24  # 32 - round(9.6) = 22 -> 24
    for kwargs, message in [
        (dict(round_to=0), r"pruner.round_to=0 is invalid"),
        (dict(group_reduction="median"), r"pruner.group_reduction='median' is invalid; allowed: mean \| sum \| max"),
        (dict(coupling="graph"), r"pruner.coupling='graph' is invalid; allowed: null \| coupled \| layer"),
        (
            dict(coupling="coupled", structure="fine"),
            r"pruner.coupling=coupled needs pruner.structure=filter or channel",
        ),
    ]:
        with pytest.raises(PruningError, match=message):
            build_pruner(model, method="level", **{"structure": "filter", **kwargs})


@pytest.mark.parametrize("reduction", ["mean", "sum", "max"])
def test_group_reduction_combines_member_scores(reduction):
    """Two convs feed one residual add: filter i of both is one channel. Conv a says channel 0 is
    weak, conv b says it is strong; the reduction decides."""

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.head = (
                nn.Conv2d(3, 2, 1, bias=False),
                nn.Conv2d(3, 2, 1, bias=False),
                nn.Conv2d(2, 1, 1),
            )

        def forward(self, x):
            return self.head(self.a(x) + self.b(x))

    model = Residual()
    with torch.no_grad():
        model.a.weight.copy_(torch.tensor([0.1, 0.7]).reshape(2, 1, 1, 1).expand(2, 3, 1, 1))
        model.b.weight.copy_(torch.tensor([1.2, 0.7]).reshape(2, 1, 1, 1).expand(2, 3, 1, 1))
    # channel 0: members 0.1 and 1.2; channel 1: 0.7 and 0.7 (l1 = mean |w| of a filter)
    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=0.5,
        ending_epoch=1,
        group_reduction=reduction,
        input_shape=(3, 2, 2),
    )
    pruner.on_epoch_start(0)
    pruned = [int(i) for i in torch.nonzero(~model.a.weight.reshape(2, -1).ne(0).any(1))]
    assert pruned == {"mean": [0], "sum": [0], "max": [1]}[reduction]
    assert model.b.weight[pruned].eq(0).all()


def test_coupled_filter_ranking_uses_the_batchnorm_folded_view():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].weight.copy_(torch.arange(1.0, 9.0))  # γ grows with the filter index ...
        model[1].weight[7] = 0.01  # ... except filter 7, which BN nearly switches off
    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=0.25,
        ending_epoch=1,
        fold_batchnorm=True,
        input_shape=(3, 5, 5),
    )
    pruner.on_epoch_start(0)
    # raw filters are all equal; only the folded view singles out filters 0 and 7
    assert pruner.masks["0.weight"].reshape(8, -1).all(1).tolist() == [False] + [True] * 6 + [False]
    assert pruner.masks["1.weight"].tolist() == [False] + [True] * 6 + [False]
    assert pruner.masks["3.weight"].reshape(4, 8)[0].tolist() == [False] + [True] * 6 + [False]
