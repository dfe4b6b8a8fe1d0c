"""Sparsity-training penalties (bn_l1, group_lasso): values by hand, gradients at pruned groups,
bad strengths and epochs, and the model being swapped for its thinned copy."""

from __future__ import annotations

import math

import pytest
import torch
from hand_models import TwoLayer
from torch import nn

from framework.errors import PruningError
from framework.models.simple_cnn import SimpleCNN
from framework.pruning import build_pruner
from framework.pruning.regularizers import BatchNormL1, GroupLasso, build_regularizer


def pruner_of(model, structure, weights):
    return build_pruner(
        model,
        method="level",
        structure=structure,
        coupling="layer",
        weights=weights,
        final_sparsity=0.3,
        starting_epoch=0,
        ending_epoch=1,
    )


@pytest.mark.parametrize(
    "structure, expected",
    [
        ("filter", math.sqrt(5) + 1 + math.sqrt(10)),  # rows of W1
        ("channel", math.sqrt(10) + math.sqrt(6)),  # columns of W1
        ("fine", 8.0),  # plain L1
    ],
)
def test_group_lasso_by_hand(structure, expected):
    model = TwoLayer()
    lasso = GroupLasso(strength=0.5).bind(model, pruner_of(model, structure, ["fc1.weight"]))
    assert lasso(model).item() == pytest.approx(0.5 * expected)


def test_group_lasso_of_a_pruned_group_has_a_zero_not_a_nan_gradient():
    model = TwoLayer()
    with torch.no_grad():
        model.fc1.weight[1].zero_()
    lasso = GroupLasso(strength=1.0).bind(model, pruner_of(model, "filter", ["fc1.weight"]))
    lasso(model).backward()
    grad = model.fc1.weight.grad
    assert torch.isfinite(grad).all() and grad[1].eq(0).all()
    assert torch.allclose(grad[0], model.fc1.weight[0] / math.sqrt(5))


def test_bn_l1_sums_the_scales_after_the_selected_layers():
    model = SimpleCNN(in_channels=1, width=0.125)  # BN widths 4, 8, 16
    with torch.no_grad():
        model.block1[1].weight.copy_(torch.tensor([0.5, -3.0, 0.1, 2.0]))
        model.block2[1].weight.fill_(-1.0)
        model.block3[1].weight.fill_(10.0)
    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=0.3,
        starting_epoch=0,
        ending_epoch=1,
        weights=["block1.0.weight", "block2.0.weight"],
        input_shape=(1, 8, 8),
    )
    slimming = BatchNormL1(strength=0.1).bind(model, pruner)
    assert slimming(model).item() == pytest.approx(0.1 * (5.6 + 8.0))
    everything = BatchNormL1(strength=1.0).bind(model)  # no pruner: every BN after a layer
    assert everything(model).item() == pytest.approx(5.6 + 8.0 + 160.0)


def test_bn_l1_without_batchnorm_is_refused():
    refusal = r"regularizer=bn_l1 finds no BatchNorm .* choose regularizer=group_lasso or none"
    with pytest.raises(PruningError, match=refusal):
        BatchNormL1().bind(TwoLayer())


@pytest.mark.parametrize("strength", [-1e-4, float("nan"), float("inf"), True, "1e-4"])
def test_strength_must_be_finite_and_non_negative(strength):
    with pytest.raises(PruningError, match=r"regularizer.strength=.* is invalid; allowed: a finite number >= 0"):
        build_regularizer("bn_l1", strength=strength)


def test_epochs_and_names_are_checked():
    with pytest.raises(PruningError, match=r"regularizer.end_epoch=2 is invalid; allowed: null .* > start_epoch=2"):
        build_regularizer("group_lasso", start_epoch=2, end_epoch=2)
    with pytest.raises(PruningError, match=r"regularizer.start_epoch=-1 is invalid"):
        build_regularizer("group_lasso", start_epoch=-1)
    with pytest.raises(PruningError, match=r"regularizer='l3' is not known; choose one of none, bn_l1, group_lasso"):
        build_regularizer("l3")
    term = build_regularizer("bn_l1", start_epoch=1, end_epoch=3)
    assert [term.active(e) for e in range(4)] == [False, True, True, False]


def test_a_replaced_model_is_read_by_name():
    model = TwoLayer()
    lasso = GroupLasso(strength=1.0).bind(model, pruner_of(model, "filter", ["fc1.weight"]))
    smaller = TwoLayer()
    with torch.no_grad():
        smaller.fc1.weight.mul_(2)
    assert lasso(smaller).item() == pytest.approx(2 * lasso(model).item())


class ConvMix(nn.Module):
    """Plain, grouped and transposed convolutions and a Linear: every way groups lie in a weight."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.up = nn.ConvTranspose2d(4, 6, 2, stride=2)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.up(self.grouped(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("structure", ["filter", "channel", "fine"])
@pytest.mark.parametrize("grad_before", [False, True])
def test_group_lasso_in_place_gradient_equals_autograds(structure, grad_before):
    torch.manual_seed(0)
    model = ConvMix()
    with torch.no_grad():
        model.conv.weight[1].zero_()  # an all-zero (pruned) filter: gradient 0, not NaN
        model.up.weight[:, 2].zero_()  # and a transposed conv's all-zero filter
    names = ["conv.weight", "grouped.weight", "up.weight", "fc.weight"]
    lasso = GroupLasso(strength=0.3).bind(model, pruner_of(model, structure, names))
    weights = [model.get_submodule(n.rsplit(".", 1)[0]).weight for n in names]
    task = [torch.randn_like(w) if grad_before else None for w in weights]

    expected_value = lasso(model)
    expected = torch.autograd.grad(expected_value, weights)
    for w, g in zip(weights, task):
        w.grad = None if g is None else g.clone()
    value = lasso.value(model)
    assert not value.requires_grad
    assert value.item() == pytest.approx(expected_value.item(), rel=1e-6)
    lasso.add_gradient(model)
    for w, g, want in zip(weights, task, expected):
        assert torch.allclose(w.grad, want if g is None else g + want, atol=1e-6), structure
