"""The 1-D models: Conv1dNet (Conv1d + BatchNorm1d) and MLP (logistic with no hidden layer)."""

import pytest
import torch
from torch import nn

from framework.errors import ConfigError
from framework.models import MLP, Conv1dNet


def test_conv1d_net_shapes_and_layer_types():
    model = Conv1dNet(num_classes=10, in_channels=1)
    assert model(torch.zeros(3, 1, 40)).shape == (3, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(convs) == len(norms) == 4 and all(c.bias is None for c in convs)
    assert sum(p.numel() for p in model.parameters()) == 45034
    assert Conv1dNet(width=0.5).classifier.in_features == 64
    assert Conv1dNet()(torch.zeros(2, 1, 7)).shape == (2, 10)  # any length: global pooling


def test_mlp_and_logistic():
    assert MLP(input_shape=(1, 40))(torch.zeros(2, 1, 40)).shape == (2, 10)
    logistic = MLP(input_shape=(1, 40), hidden=[])
    assert [type(m) for m in logistic.layers] == [nn.Flatten, nn.Linear]
    assert sum(p.numel() for p in logistic.parameters()) == 410


@pytest.mark.parametrize("build_it", [lambda: MLP(hidden=[0]), lambda: MLP(hidden=["a"]), lambda: Conv1dNet(width=0)])
def test_bad_arguments_are_one_line(build_it):
    with pytest.raises(ConfigError) as info:
        build_it()
    assert "\n" not in str(info.value)
