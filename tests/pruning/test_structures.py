"""Structures: to_groups / expand_group_mask against the definitions, and what they mean
physically (zeroing a channel makes the output blind to that input channel)."""

import pytest
import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.structures import any_along, any_per_group, expand_group_mask, group_count, to_groups


def numbered(layer: nn.Module) -> torch.Tensor:
    """Weight whose entries are their flat index: groups are easy to read off."""
    return torch.arange(layer.weight.numel(), dtype=torch.float32).reshape(layer.weight.shape)


def reference_slices(layer: nn.Module, structure: str, weight: torch.Tensor) -> list[torch.Tensor]:
    """The definition from the module docstring, written with explicit loops."""
    g = getattr(layer, "groups", 1)
    transposed = getattr(layer, "transposed", False)
    lead, second = weight.shape[0], weight.shape[1]
    per_group_lead = lead // g
    direct = "channel" if transposed else "filter"
    if structure == direct:
        return [weight[i] for i in range(lead)]
    slices = []
    for index in range(g * second):
        group, local = divmod(index, second)
        slices.append(weight[group * per_group_lead : (group + 1) * per_group_lead, local])
    return slices


LAYERS = [
    nn.Linear(4, 3),
    nn.Conv1d(4, 6, 3),
    nn.Conv2d(4, 6, 3),
    nn.Conv3d(2, 4, 2),
    nn.Conv2d(4, 6, 3, groups=2),
    nn.Conv2d(6, 6, 3, groups=3),
    nn.Conv2d(4, 4, 3, groups=4),  # depthwise, multiplier 1
    nn.Conv2d(4, 8, 3, groups=4),  # depthwise, multiplier 2
    nn.ConvTranspose1d(4, 6, 3),
    nn.ConvTranspose2d(4, 6, 3),
    nn.ConvTranspose2d(4, 6, 3, groups=2),
    nn.ConvTranspose3d(2, 4, 2),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: repr(layer))
@pytest.mark.parametrize("structure", ["filter", "channel"])
def test_groups_match_definition(layer, structure):
    weight = numbered(layer)
    groups = to_groups(weight, structure, layer)
    expected = reference_slices(layer, structure, weight)
    assert groups.shape[0] == len(expected) == group_count(structure, layer, weight.shape)
    for row, reference in zip(groups, expected):
        assert torch.equal(row.sort().values, reference.flatten().sort().values)


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: repr(layer))
@pytest.mark.parametrize("structure", ["filter", "channel"])
def test_expand_zeroes_exactly_the_dropped_groups(layer, structure):
    weight = numbered(layer) + 1  # no zero entries
    n = group_count(structure, layer, weight.shape)
    keep = torch.arange(n) % 3 != 1
    mask = expand_group_mask(keep, structure, layer, weight.shape)
    assert mask.shape == weight.shape and mask.dtype == torch.bool
    masked = weight * mask
    for index, reference in enumerate(reference_slices(layer, structure, masked)):
        assert bool((reference != 0).all()) == bool(keep[index])
        assert bool((reference == 0).all()) == (not bool(keep[index]))
    assert int((~mask).sum()) == int((~keep).sum()) * weight.numel() // n


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: repr(layer))
@pytest.mark.parametrize("structure", ["filter", "channel", "fine"])
def test_any_per_group_is_any_over_each_group(layer, structure):
    generator = torch.Generator().manual_seed(0)
    for density in (0.0, 0.05, 0.5, 1.0):
        mask = torch.rand(layer.weight.shape, generator=generator) < density
        expected = to_groups(mask, structure, layer).any(1)
        assert torch.equal(any_per_group(mask, structure, layer), expected)
        # a non-contiguous mask (a transposed view) reads the same
        flipped = mask.transpose(0, 1).contiguous().transpose(0, 1)
        assert torch.equal(any_per_group(flipped, structure, layer), expected)


@pytest.mark.parametrize("shape", [(5,), (1, 3, 4), (4, 2, 3), (2, 3, 1, 4)])
def test_any_along_is_any_over_the_other_dims(shape):
    generator = torch.Generator().manual_seed(0)
    for dim in range(len(shape)):
        for density in (0.0, 0.2, 1.0):
            mask = torch.rand(shape, generator=generator) < density
            expected = mask.movedim(dim, 0).reshape(shape[dim], -1).any(1)
            assert torch.equal(any_along(mask, dim), expected)


def test_linear_hand_computed():
    layer = nn.Linear(3, 2)
    weight = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert torch.equal(to_groups(weight, "filter", layer), weight)
    assert torch.equal(to_groups(weight, "channel", layer), torch.tensor([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]))
    mask = expand_group_mask(torch.tensor([True, False, True]), "channel", layer, weight.shape)
    assert torch.equal(mask, torch.tensor([[True, False, True], [True, False, True]]))


def test_grouped_conv_channel_hand_computed():
    # Conv2d(4 -> 4, k=1, groups=2): weight [4, 2, 1, 1]; input channel 3 is in group 1 at local
    # index 1, read only by filters 2 and 3.
    layer = nn.Conv2d(4, 4, 1, groups=2)
    weight = torch.arange(8.0).reshape(4, 2, 1, 1)
    groups = to_groups(weight, "channel", layer)
    assert groups.tolist() == [[0.0, 2.0], [1.0, 3.0], [4.0, 6.0], [5.0, 7.0]]


def test_depthwise_filter_equals_channel():
    layer = nn.Conv2d(3, 3, 3, groups=3)
    weight = torch.randn(layer.weight.shape)
    assert torch.equal(to_groups(weight, "filter", layer), to_groups(weight, "channel", layer))


def test_conv_transpose_filter_hand_computed():
    # ConvTranspose1d(2 -> 4, k=1, groups=2): weight [2, 2, 1]; output 3 is group 1, local 1.
    layer = nn.ConvTranspose1d(2, 4, 1, groups=2)
    weight = torch.arange(4.0).reshape(2, 2, 1)
    assert to_groups(weight, "filter", layer).tolist() == [[0.0], [1.0], [2.0], [3.0]]
    assert to_groups(weight, "channel", layer).tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_fine_is_one_element_per_group():
    weight = torch.randn(2, 3)
    assert torch.equal(to_groups(weight, "fine"), weight.reshape(6, 1))
    keep = torch.tensor([True, False, True, True, False, True])
    assert torch.equal(expand_group_mask(keep, "fine", None, weight.shape), keep.reshape(2, 3))


PHYSICAL_LAYERS = [
    nn.Conv1d(4, 6, 3),
    nn.Conv2d(4, 6, 3, groups=2),
    nn.Conv3d(2, 4, 2),
    nn.Conv2d(4, 8, 3, groups=4),
    nn.ConvTranspose2d(4, 6, 3, groups=2),
    nn.Linear(4, 3),
]


def _input_for(layer):
    channels = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    if isinstance(layer, nn.Linear):
        return torch.randn(2, channels)
    spatial = {nn.Conv1d: (5,), nn.Conv2d: (5, 5), nn.Conv3d: (4, 4, 4), nn.ConvTranspose2d: (5, 5)}[type(layer)]
    return torch.randn(2, channels, *spatial)


@torch.no_grad()
def _zero_group(layer, structure, index):
    """Zero group ``index`` of ``structure`` in the layer's weight, as a pruner's mask would."""
    keep = torch.ones(group_count(structure, layer, layer.weight.shape), dtype=torch.bool)
    keep[index] = False
    layer.weight.mul_(expand_group_mask(keep, structure, layer, layer.weight.shape))


@pytest.mark.parametrize("layer", PHYSICAL_LAYERS, ids=lambda layer: repr(layer))
def test_zeroing_a_channel_removes_that_input(layer):
    torch.manual_seed(0)
    _zero_group(layer, "channel", 1)
    with torch.no_grad():
        x = _input_for(layer)
        changed = x.clone()
        changed[:, 1] += 10.0
        assert torch.allclose(layer(x), layer(changed), atol=1e-5)
        other = x.clone()
        other[:, 0] += 10.0
        assert not torch.allclose(layer(x), layer(other), atol=1e-5)


@pytest.mark.parametrize("layer", PHYSICAL_LAYERS, ids=lambda layer: repr(layer))
def test_zeroing_a_filter_silences_that_output(layer):
    torch.manual_seed(0)
    _zero_group(layer, "filter", 2)
    with torch.no_grad():
        layer.bias.zero_()
        out = layer(_input_for(layer))
    assert torch.count_nonzero(out[:, 2]) == 0
    assert torch.count_nonzero(out[:, 0]) > 0


def test_one_dimensional_parameters_are_rejected():
    layer = nn.Conv2d(2, 3, 3)
    with pytest.raises(PruningError, match="1-D"):
        to_groups(layer.bias, "filter", layer)
    bn = nn.BatchNorm2d(3)
    with pytest.raises(PruningError, match="BatchNorm2d"):
        to_groups(bn.weight, "channel", bn)


def test_unknown_structure_and_bad_mask_size():
    layer = nn.Linear(3, 2)
    with pytest.raises(PruningError, match="pruner.structure='block'"):
        to_groups(layer.weight, "block", layer)
    with pytest.raises(PruningError, match="needs 3 entries"):
        expand_group_mask(torch.ones(2, dtype=torch.bool), "channel", layer, layer.weight.shape)
