"""BatchNorm fused into its layer: same function in float32, fewer modules, original untouched."""

from __future__ import annotations

import pytest
import torch
from bn_models import trained_looking
from torch import nn

from framework.deploy.errors import DeployError
from framework.deploy.fuse import check_fused_matches, count_batchnorms, fuse_batchnorm
from framework.models import CifarResNet


class HeadWithBN1d(nn.Module):
    """conv->BN->ReLU, then a BN after the ReLU (cannot fuse), then linear->BN1d (fuses)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.after_relu = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 6)
        self.bn_fc = nn.BatchNorm1d(6)

    def forward(self, x):
        x = self.after_relu(torch.relu(self.bn(self.conv(x))))
        return self.bn_fc(self.fc(x.flatten(1)))


def test_resnet_fuses_every_batchnorm_and_stays_equal_in_float32():
    model = trained_looking(CifarResNet(depth=20, num_classes=10, in_channels=1, shortcut="B")).train()
    fused = fuse_batchnorm(model)
    assert count_batchnorms(model) == 1 + 18 + 2  # stem, two per block, two projection shortcuts
    assert count_batchnorms(fused) == 0
    assert model.training and all(m.training for m in model.modules())  # the original is left alone
    assert not fused.training
    inputs = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    assert check_fused_matches(model, fused, inputs) <= 1e-5
    assert model.training  # the check restores the flags it changed


def test_only_batchnorms_right_after_a_layer_are_fused():
    model = trained_looking(HeadWithBN1d())
    fused = fuse_batchnorm(model)
    assert isinstance(fused.bn, nn.Identity) and isinstance(fused.bn_fc, nn.Identity)
    assert isinstance(fused.after_relu, nn.BatchNorm2d)
    assert check_fused_matches(model, fused, torch.randn(4, 1, 8, 8)) <= 1e-5


def test_a_fused_model_that_differs_is_refused_in_one_line():
    model = trained_looking(HeadWithBN1d())
    other = fuse_batchnorm(trained_looking(HeadWithBN1d(), seed=1))
    with pytest.raises(DeployError) as error:
        check_fused_matches(model, other, torch.randn(4, 1, 8, 8))
    assert "BatchNorm fusion changed the model's output" in str(error.value)
    assert "\n" not in str(error.value)


def test_inference_form_is_fused_channels_last_and_equal():
    from framework.deploy.fuse import ChannelsLast, inference_form

    model = trained_looking(CifarResNet(depth=20, num_classes=10, in_channels=1, shortcut="B")).eval()
    deployed = inference_form(model)  # no shape given: channels-last for a model with 2-D convs
    assert isinstance(deployed, ChannelsLast) and count_batchnorms(deployed) == 0
    assert deployed.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert check_fused_matches(model, deployed, torch.randn(3, 1, 8, 8)) <= 1e-5
    timed = inference_form(model, (1, 8, 8), batch=1)  # the faster layout, whichever it is here
    assert count_batchnorms(timed) == 0 and check_fused_matches(model, timed, torch.randn(3, 1, 8, 8)) <= 1e-5
