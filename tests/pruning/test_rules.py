"""Mask rules: exact counts, ties, already-pruned groups, threshold rules, and the property that
masks never regrow."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from framework.errors import PruningError
from framework.pruning.masks import MaskStore
from framework.pruning.rules import (
    SAMPLE_SIZE,
    RankingRule,
    build_mask_rule,
    lowest_k,
    round_half_up,
)
from framework.pruning.scores.criteria import build_criterion
from framework.pruning.structures import group_count, to_groups


def test_round_half_up():
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 2.49, 0.0)] == [1, 2, 3, 2, 0]


def test_lowest_k_breaks_ties_by_index():
    scores = torch.tensor([3.0, 1.0, 1.0, 0.0, 1.0])
    assert lowest_k(scores, 2).tolist() == [False, True, False, True, False]
    assert lowest_k(scores, 3).tolist() == [False, True, True, True, False]
    assert lowest_k(scores, 0).tolist() == [False] * 5
    assert lowest_k(scores, 5).tolist() == [True] * 5


@pytest.mark.parametrize(
    "values",
    [
        lambda n: torch.randn(n),
        lambda n: torch.randn(n).exp() ** 6,  # heavily skewed
        lambda n: torch.randint(0, 3, (n,)).float(),  # massive ties
        lambda n: torch.cat([torch.full((n // 2,), -math.inf), torch.rand(n - n // 2)]),
    ],
)
def test_lowest_k_cuts_exactly_at_kthvalue_on_large_inputs(values):
    """Large inputs take the sampled-bracket path; the cut must still be the exact k-th value."""
    torch.manual_seed(0)
    scores = values(6 * SAMPLE_SIZE + 7)
    for k in (1, 17, scores.numel() // 3, scores.numel() // 2 + 1, scores.numel() - 1, scores.numel()):
        selected = lowest_k(scores, k)
        assert scores[selected].max() == torch.kthvalue(scores, k).values
        assert int(selected.sum()) == k


def test_fine_level_prunes_exactly_the_smallest_magnitudes():
    pruner = build_mask_rule("level", "fine", "l1")
    weight = torch.tensor([[0.1, -0.5], [0.3, 0.05]])
    keep = pruner.keep_mask(weight, None, 0.5, None)
    assert keep.tolist() == [[False, True], [True, False]]


def test_round_half_up_group_count():
    # 3 filters at 50% -> round(1.5) = 2 filters pruned
    layer = nn.Linear(2, 3)
    weight = torch.tensor([[1.0, 1.0], [3.0, 3.0], [2.0, -2.0]])
    keep = build_mask_rule("agp", "filter", "l1").keep_mask(weight, layer, 0.5, None)
    assert keep.tolist() == [[False, False], [True, True], [False, False]]


def test_channel_l2_on_conv_hand_computed():
    layer = nn.Conv1d(3, 2, 1)
    # channel scores (rms over the 2 filters): c0 = 1, c1 = sqrt(12.5), c2 = sqrt(0.5)
    weight = torch.tensor([[[1.0], [3.0], [1.0]], [[1.0], [4.0], [0.0]]])
    keep = build_mask_rule("level", "channel", "l2").keep_mask(weight, layer, 0.34, None)
    assert keep[:, :, 0].tolist() == [[True, True, False], [True, True, False]]
    keep = build_mask_rule("level", "channel", "l2").keep_mask(weight, layer, 0.67, None)
    assert keep[:, :, 0].tolist() == [[False, True, False], [False, True, False]]


def test_grouped_conv_filter_pruning_counts_groups():
    layer = nn.Conv2d(4, 6, 3, groups=2)
    weight = torch.randn(layer.weight.shape)
    keep = build_mask_rule("agp", "filter", "l1").keep_mask(weight, layer, 0.5, None)
    assert int((~keep.reshape(6, -1).all(dim=1)).sum()) == 3


def test_already_pruned_groups_count_towards_the_target():
    # Random scores would pick other groups; the already pruned ones must be reused first.
    layer = nn.Linear(2, 10)
    pruner = RankingRule("filter", build_criterion("random", seed=0))
    current = torch.ones(10, 2, dtype=torch.bool)
    current[[1, 4, 7]] = False
    keep = pruner.keep_mask(torch.randn(10, 2), layer, 0.5, current)
    dropped = set((~keep.all(dim=1)).nonzero().flatten().tolist())
    assert {1, 4, 7} <= dropped and len(dropped) == 5


def test_lower_target_keeps_the_current_mask():
    pruner = build_mask_rule("level", "fine", "l1")
    current = torch.tensor([False, False, True, True])
    keep = pruner.keep_mask(torch.tensor([5.0, 6.0, 1.0, 2.0]), None, 0.25, current)
    assert keep.tolist() == [False, False, True, True]


def test_magnitude_threshold():
    pruner = build_mask_rule("magnitude", "fine", threshold=0.3)
    keep = pruner.keep_mask(torch.tensor([0.1, -0.3, 0.5, -0.29]), None, None, None)
    assert keep.tolist() == [False, True, True, False]


def test_std_threshold_uses_the_layer_std():
    weight = torch.tensor([1.0, -1.0, 3.0, -3.0])  # population std = sqrt(5)
    pruner = build_mask_rule("std_threshold", "fine", std_multiplier=0.5)  # threshold = 1.118
    assert pruner.keep_mask(weight, None, None, None).tolist() == [False, False, True, True]
    pruner = build_mask_rule("std_threshold", "fine", std_multiplier=0.4)  # threshold = 0.894
    assert pruner.keep_mask(weight, None, None, None).tolist() == [True, True, True, True]


@pytest.mark.parametrize("method", ["magnitude", "std_threshold"])
@pytest.mark.parametrize("structure", ["filter", "channel"])
def test_threshold_methods_are_fine_only(method, structure):
    with pytest.raises(
        PruningError, match=f"pruner.structure={structure} does not apply to pruner.method={method}; allowed: fine"
    ):
        build_mask_rule(method, structure, threshold=0.1, std_multiplier=0.1)


def test_threshold_arguments_are_validated():
    with pytest.raises(PruningError, match="pruner.threshold=None is invalid; allowed: a number >= 0"):
        build_mask_rule("magnitude", "fine")
    with pytest.raises(PruningError, match="pruner.std_multiplier=-1 is invalid; allowed: a number >= 0"):
        build_mask_rule("std_threshold", "fine", std_multiplier=-1)
    with pytest.raises(PruningError, match="pruner.method='prune' is invalid; allowed: none"):
        build_mask_rule("prune", "fine")
    with pytest.raises(PruningError, match="pruner.method=none prunes nothing and has no mask rule"):
        build_mask_rule("none", "fine")


LAYERS = {
    "fine": nn.Conv2d(4, 6, 3, groups=2),
    "filter": nn.Conv2d(4, 6, 3, groups=2),
    "channel": nn.ConvTranspose2d(4, 6, 2, groups=2),
}


@settings(max_examples=40, deadline=None)
@given(
    structure=st.sampled_from(["fine", "filter", "channel"]),
    criterion=st.sampled_from(["l1", "l2", "random"]),
    targets=st.lists(st.floats(min_value=0.0, max_value=0.99), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
)
def test_masks_never_regrow(structure, criterion, targets, seed):
    torch.manual_seed(seed)
    layer = LAYERS[structure]
    store = MaskStore({"w": layer.weight})
    pruner = build_mask_rule("level", structure, criterion, seed=seed)
    previous = torch.ones_like(layer.weight, dtype=torch.bool)
    n_groups = group_count(structure, layer, layer.weight.shape)
    expected_pruned = 0
    for target in targets:
        with torch.no_grad():
            layer.weight.add_(torch.randn_like(layer.weight))  # training moves every weight
        keep = pruner.keep_mask(layer.weight, layer if structure != "fine" else None, target, store.get("w"))
        mask = store.update("w", keep)
        store.apply()
        assert not bool((mask & ~previous).any()), "a pruned weight came back"
        assert torch.count_nonzero(layer.weight[~mask]) == 0
        # Exactly max(previous, round(t * n)) groups are pruned: the target is met, never overshot.
        # (filter/channel: at most n - 1, one group always survives)
        asked = round_half_up(target * n_groups)
        expected_pruned = max(expected_pruned, asked if structure == "fine" else min(asked, n_groups - 1))
        pruned_groups = ~to_groups(mask, structure, layer).any(dim=1)
        assert int(pruned_groups.sum()) == expected_pruned
        previous = mask.clone()
