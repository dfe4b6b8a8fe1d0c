"""fold_batchnorm=activation: ranking by the change after BN + ReLU under Gaussian pre-activations."""

from __future__ import annotations

import torch
from torch import nn

from framework.pruning import build_pruner
from framework.pruning.scores.bn_activation import ActivationRanking

torch.set_num_threads(1)


def _block(relu: bool = True) -> nn.Sequential:
    """Conv(1->3, 1x1) -> BN -> ReLU with three hand-set channels:
    0: gamma 1, beta -5 (shifted far below zero: dead after the ReLU), large raw weight;
    1: gamma 0.1, beta 0 (small scale);
    2: gamma 0.5, beta 2 (always active, shifts every reader)."""
    layers = [nn.Conv2d(1, 3, 1, bias=False), nn.BatchNorm2d(3)] + ([nn.ReLU()] if relu else [])
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(3 * 2 * 2, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([3.0, 1.0, 1.0]).reshape(3, 1, 1, 1))
        model[1].weight.copy_(torch.tensor([1.0, 0.1, 0.5]))
        model[1].bias.copy_(torch.tensor([-5.0, 0.0, 2.0]))
        model[1].running_mean.copy_(torch.tensor([0.3, -0.2, 1.0]))
        model[1].running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    return model


def _monte_carlo_relu_rms(bn: nn.BatchNorm2d, relu: bool) -> torch.Tensor:
    """Sample z ~ N(running_mean, running_var), push it through the real BN (and ReLU), take the RMS."""
    generator = torch.Generator().manual_seed(0)
    z = bn.running_mean + bn.running_var.sqrt() * torch.randn(400_000, 3, generator=generator)
    y = bn(z.reshape(-1, 3, 1, 1)).reshape(-1, 3)
    if relu:
        y = torch.relu(y)
    return y.square().mean(0).sqrt()


def test_filter_view_is_the_rms_of_the_removed_activation():
    for relu in (True, False):
        model = _block(relu)
        view = ActivationRanking(model, "filter").view("0.weight", model[0].weight)
        expected = _monte_carlo_relu_rms(model[1], relu)
        assert torch.allclose(view.reshape(3), expected, rtol=0.01, atol=1e-3), (relu, view.reshape(3), expected)


def test_fine_view_is_folding_times_root_of_the_active_probability():
    model = _block()
    view = ActivationRanking(model, "fine").view("0.weight", model[0].weight).reshape(3)
    generator = torch.Generator().manual_seed(1)
    bn = model[1]
    z = bn.running_mean + bn.running_var.sqrt() * torch.randn(400_000, 3, generator=generator)
    active = (bn(z.reshape(-1, 3, 1, 1)).reshape(-1, 3) > 0).float().mean(0)
    folded = model[0].weight.reshape(3) * bn.weight / torch.sqrt(bn.running_var + bn.eps)
    # channel 0 is active with P = Phi(-5) ~ 3e-7: too rare to sample, hence the absolute tolerance
    assert torch.allclose(view, folded * active.sqrt(), rtol=0.01, atol=2e-3)
    assert 0 < view[0] < 1e-3


def test_dead_channel_ranks_last_with_activation_but_first_with_folding():
    kept = {}
    for fold in (True, "activation"):
        model = _block()
        pruner = build_pruner(
            model,
            method="level",
            structure="filter",
            final_sparsity=0.34,
            starting_epoch=0,
            ending_epoch=1,
            fold_batchnorm=fold,
            input_shape=(1, 2, 2),
            criterion="l2",
        )
        pruner.on_epoch_start(0)
        kept[fold] = pruner.masks["0.weight"].reshape(3).tolist()
    # folding: |3 * 1 / 2| = 1.5 is the largest scale, the small-gamma channel 1 goes
    assert kept[True] == [True, False, True]
    # BN-aware: channel 0 outputs ReLU(N(-5, 1)) ~ 0: it is the one removed
    assert kept["activation"] == [False, True, True]


def test_relu_detection_reads_the_graph():
    assert ActivationRanking(_block(True), "fine").relu_after == {"0.weight"}
    assert ActivationRanking(_block(False), "fine").relu_after == set()
