"""N:M semi-structured sparsity: the pattern per block, AGP towards it, and the settings it refuses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning import build_pruner
from framework.pruning.nm import check_nm_pattern, from_blocks, nm_violations, to_blocks


class TwoLayers(nn.Module):
    def __init__(self, in_channels: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 12)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def nm(model, **kw):
    arguments = dict(method="agp", structure="nm", n=2, m=4, final_sparsity=0.5, starting_epoch=0, ending_epoch=3)
    arguments.update(kw)
    return build_pruner(model, **arguments)


def test_blocks_run_along_the_input_dimension():
    conv = torch.arange(2 * 8 * 3 * 3).reshape(2, 8, 3, 3)
    blocks = to_blocks(conv, 4)
    assert blocks.shape == (2 * 3 * 3 * 2, 4)
    assert blocks[0].tolist() == conv[0, 0:4, 0, 0].tolist()  # four consecutive input channels, one position
    assert torch.equal(from_blocks(blocks, conv.shape), conv)
    linear = torch.arange(3 * 8).reshape(3, 8)
    assert to_blocks(linear, 4)[1].tolist() == linear[0, 4:8].tolist()


def test_agp_reaches_exactly_two_of_four_keeping_the_largest_in_each_block():
    torch.manual_seed(0)
    model = TwoLayers()
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    pruner = nm(model)
    targets = [pruner.on_epoch_start(epoch) for epoch in range(3)]
    assert targets[0] == 0.0 and 0 < targets[1] < 0.5 and targets[2] == pytest.approx(0.5)
    for name in ("conv.weight", "fc.weight"):
        weight, mask = dict(model.named_parameters())[name], pruner.masks[name]
        kept = to_blocks(mask, 4).sum(dim=1)
        assert (kept == 2).all()  # exactly the pattern, every block
        # the two kept are the two largest |w| of the block (the l1 criterion)
        magnitude = to_blocks(original[name].abs(), 4)
        top2 = magnitude.topk(2, dim=1).indices.sort(dim=1).values
        assert torch.equal(to_blocks(mask, 4).nonzero()[:, 1].reshape(-1, 2), top2)
        assert nm_violations(weight, 2, 4) == 0
    check_nm_pattern(model, pruner.parameter_names, 2, 4)
    assert "conv.bias" not in pruner.masks  # biases are not blocked


def test_intermediate_agp_step_prunes_one_per_block_and_never_regrows():
    model = TwoLayers()
    pruner = nm(model, ending_epoch=5)
    pruner.on_epoch_start(0)
    pruner.on_epoch_start(1)  # AGP target 1 - (1 - 1/4)^3 ... ~0.29 of the way: round(t * 4) = 1
    first = {name: mask.clone() for name, mask in pruner.masks.items()}
    assert all((to_blocks(mask, 4).sum(dim=1) == 3).all() for mask in first.values())
    for epoch in range(2, 5):
        pruner.on_epoch_start(epoch)
    for name, mask in pruner.masks.items():
        assert not (mask & ~first[name]).any()  # pruned weights stay pruned
        assert (to_blocks(mask, 4).sum(dim=1) == 2).all()


def test_the_validator_names_a_tensor_that_breaks_the_pattern():
    model = TwoLayers()
    pruner = nm(model, ending_epoch=1)
    pruner.on_epoch_start(0)
    check_nm_pattern(model, pruner.parameter_names, 2, 4)
    with torch.no_grad():
        model.fc.weight[0, :4] = 1.0
    with pytest.raises(PruningError, match=r"fc.weight breaks the 2:4 pattern in 1 of its 768 blocks"):
        check_nm_pattern(model, pruner.parameter_names, 2, 4)


@pytest.mark.parametrize(
    "kw, expected",
    [
        (dict(n=4, m=4, final_sparsity=0.0), "pruner.n=4 must be below pruner.m=4"),
        (dict(n=0), "pruner.n=0 is invalid with pruner.structure=nm; allowed: an integer >= 1"),
        (
            dict(coupling="coupled"),
            "pruner.coupling=coupled cannot be combined with pruner.structure=nm: "
            "N:M zeroes weights inside each block and does not shrink any shape",
        ),
        (dict(thin="end"), "pruner.thin=end cannot be combined with pruner.structure=nm"),
        (
            dict(final_sparsity=0.7),
            "pruner.final_sparsity=0.7 does not match pruner.n=2, pruner.m=4 (the pattern removes 2 of every 4); "
            "allowed: pruner.final_sparsity=0.5",
        ),
        (
            dict(m=3, n=1, final_sparsity=2 / 3),
            "pruner.m=3 does not divide the input dimension of conv.weight (8, weight shape (16, 8, 3, 3)); "
            "exclude it with pruner.exclude=['conv.weight']",
        ),
    ],
)
def test_settings_nm_cannot_take_are_one_line(kw, expected):
    with pytest.raises(PruningError) as error:
        nm(TwoLayers(), **kw)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_layer_m_does_not_divide_can_be_excluded():
    model = TwoLayers(in_channels=1)
    with pytest.raises(PruningError, match=r"input dimension of conv.weight \(1,"):
        nm(model)
    pruner = nm(model, exclude=["conv.weight"])
    assert pruner.parameter_names == ["fc.weight"]


def test_a_final_sparsity_that_rounds_to_the_pattern_is_taken_and_keeps_exactly_n():
    """1:3 is 2/3: 0.67 or 0.667 as typed, not 0.666667 demanded (issue 29 item 9)."""
    for typed in (0.67, 0.667):
        model = TwoLayers(in_channels=6)
        pruner = nm(model, n=1, m=3, final_sparsity=typed, exclude=["fc.weight"], ending_epoch=1)
        pruner.on_epoch_start(0)  # the last pruning epoch: the pattern itself
        assert (to_blocks(pruner.masks["conv.weight"], 3).sum(dim=1) == 1).all()
    with pytest.raises(PruningError, match=r"allowed: pruner.final_sparsity=0.6667 \(within 0.005\)"):
        nm(TwoLayers(in_channels=6), n=1, m=3, final_sparsity=0.6, exclude=["fc.weight"])
