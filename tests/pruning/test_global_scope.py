"""pruner.scope=global: one threshold across layers on normalised scores, floors, AGP totals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning import build_pruner

torch.set_num_threads(1)


def _two_linear_layers() -> nn.Sequential:
    """Layer 0 holds 1..16, layer 1 holds (1..16)²: raw magnitudes differ by an order."""
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(1.0, 17.0).reshape(4, 4))
        model[1].weight.copy_((torch.arange(1.0, 17.0) ** 2).reshape(4, 4))
    return model


def _expected_pruned(values_by_layer, k, max_removed_per_layer):
    """By hand: normalise each layer by its mean, walk all values from the lowest, skip a layer
    once it has lost its maximum, stop after k."""
    entries = []
    for layer, values in enumerate(values_by_layer):
        mean = sum(values) / len(values)
        entries += [(v / mean, layer, i) for i, v in enumerate(values)]
    pruned, per_layer = set(), [0] * len(values_by_layer)
    for _, layer, i in sorted(entries):
        if len(pruned) == k:
            break
        if per_layer[layer] < max_removed_per_layer:
            pruned.add((layer, i))
            per_layer[layer] += 1
    return pruned


def _pruned_set(pruner):
    result = set()
    for layer, name in enumerate(["0.weight", "1.weight"]):
        mask = pruner.masks[name].reshape(-1)
        result |= {(layer, i) for i in range(mask.numel()) if not mask[i]}
    return result


@pytest.mark.parametrize("max_layer_sparsity, removable", [(None, 15), (0.5, 8)])
def test_fine_global_cut_is_one_threshold_on_normalised_scores_and_respects_floors(max_layer_sparsity, removable):
    model = _two_linear_layers()
    values = [list(range(1, 17)), [i * i for i in range(1, 17)]]
    pruner = build_pruner(
        model,
        method="level",
        structure="fine",
        final_sparsity=0.5,
        starting_epoch=0,
        ending_epoch=1,
        scope="global",
        max_layer_sparsity=max_layer_sparsity,
    )
    pruner.on_epoch_start(0)
    expected = _expected_pruned(values, 16, removable)
    assert _pruned_set(pruner) == expected
    assert pruner.sparsity()["total"] == 0.5
    # one threshold: every removed value scores at most every kept one of a layer not at its floor
    normalised = {(layer, i): v / (sum(vs) / 16) for layer, vs in enumerate(values) for i, v in enumerate(vs)}
    per_layer = [sum(1 for (layer, _) in expected if layer == n) for n in range(2)]
    free_kept = [s for key, s in normalised.items() if key not in expected and per_layer[key[0]] < removable]
    assert max(normalised[key] for key in expected) <= min(free_kept, default=math.inf)
    if max_layer_sparsity is not None:
        assert per_layer == [8, 8]  # layer 1's small squares hit the floor; layer 0 supplies the rest
    else:
        assert per_layer[1] > per_layer[0]  # squares are spread wider: more of them fall below the cut


def test_per_layer_scope_prunes_each_layer_alone():
    pruner = build_pruner(
        _two_linear_layers(), method="level", structure="fine", final_sparsity=0.5, starting_epoch=0, ending_epoch=1
    )
    pruner.on_epoch_start(0)
    assert _pruned_set(pruner) == {(layer, i) for layer in (0, 1) for i in range(8)}


def _conv_net() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    with torch.no_grad():  # make the second layer's raw weights 10x larger: per-layer magnitude
        model[3].weight.mul_(10.0)
    return model.eval()


def test_coupled_filter_global_cut_uses_normalised_filter_scores_and_floors():
    model = _conv_net()
    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=0.4,
        starting_epoch=0,
        ending_epoch=1,
        scope="global",
        max_layer_sparsity=0.75,
        input_shape=(1, 6, 6),
    )
    # hand-computed scores: l1 = mean |w| of each filter, divided by the layer's mean
    by_hand = []
    for conv in (model[0], model[3]):
        rows = conv.weight.detach().abs().reshape(conv.out_channels, -1).mean(1).double()
        by_hand.append(rows / rows.mean())
    scores = pruner.channel_scores()
    for (got, alive), expected in zip(scores, by_hand):
        assert torch.allclose(got, expected)
        assert alive.all()
    pruner.on_epoch_start(0)
    kept = [pruner.masks["0.weight"].reshape(6, -1).any(1), pruner.masks["3.weight"].reshape(8, -1).any(1)]
    # floors: at most floor(0.75 n) removed per group
    assert int((~kept[0]).sum()) <= 4 and int((~kept[1]).sum()) <= 6
    assert all(k.any() for k in kept)
    removed = torch.cat([s[~k] for s, k in zip(by_hand, kept)])
    free_kept = []
    for s, k, cap in zip(by_hand, kept, (4, 6)):
        if int((~k).sum()) < cap:
            free_kept.append(s[k])
    if free_kept:
        assert removed.max() <= torch.cat(free_kept).min()
    # the total over the selected weights (convs + classifier) is within one coupled channel
    total = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1)
    one_channel = 6 * 9 + 8 * 9 + 3  # the largest removal: a conv2 column block or a filter row + classifier column
    assert abs(pruner.sparsity()["total"] - 0.4) <= one_channel / total
    # the masked model computes exactly what it did with those channels at zero (BN gamma/beta masked)
    assert torch.count_nonzero(model[1].weight[~kept[0]]) == 0
    assert torch.count_nonzero(model[4].bias[~kept[1]]) == 0


@pytest.mark.parametrize(
    "structure, coupling", [("fine", None), ("filter", None), ("channel", None), ("filter", "layer")]
)
@pytest.mark.parametrize("fold_batchnorm", [False, True, "activation"])
def test_agp_with_global_scope_hits_the_scheduled_total_at_every_pruning_epoch(structure, coupling, fold_batchnorm):
    model = _conv_net().train()
    with torch.no_grad():
        for bn in (model[1], model[4]):  # learned-looking statistics so that the views differ
            bn.running_var.uniform_(0.2, 3.0)
            bn.weight.uniform_(0.1, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    pruner = build_pruner(
        model,
        method="agp",
        structure=structure,
        final_sparsity=0.6,
        starting_epoch=0,
        ending_epoch=5,
        scope="global",
        fold_batchnorm=fold_batchnorm,
        coupling=coupling,
        input_shape=(1, 6, 6),
    )
    total = sum(p.param.numel() for p in pruner.selected)
    # fine: exact up to rounding to whole weights; structured: within one coupled channel
    tolerance = 0.5 / total if structure == "fine" else (6 * 9 + 8 * 9 + 3) / total
    for epoch in range(5):
        target = pruner.on_epoch_start(epoch)
        assert abs(pruner.sparsity()["total"] - target) <= tolerance + 1e-12, (epoch, target)
    assert target == pytest.approx(0.6)


def test_global_scope_rejects_levels_and_unknown_scopes():
    with pytest.raises(PruningError, match="pruner.scope='everywhere'"):
        build_pruner(_two_linear_layers(), method="agp", scope="everywhere")
    with pytest.raises(PruningError, match="pruner.levels cannot be combined with pruner.scope=global"):
        build_pruner(_two_linear_layers(), method="agp", scope="global", levels={"0.*": 0.2})
    with pytest.raises(PruningError, match="max_layer_sparsity=1.0"):
        build_pruner(_two_linear_layers(), method="agp", scope="global", max_layer_sparsity=1.0)
