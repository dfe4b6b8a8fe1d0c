"""Layer scope: each producer of a concatenation gets the layer's level (issue 21 item 9)."""

from __future__ import annotations

import torch
from coupling_support import prune
from torch import nn


class Fire(nn.Module):
    """SqueezeNet's Fire module: squeeze, then two expands concatenated."""

    def __init__(self):
        super().__init__()
        self.squeeze = nn.Conv2d(3, 8, 1)
        self.expand1x1 = nn.Conv2d(8, 16, 1)
        self.expand3x3 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Conv2d(32, 10, 1)

    def forward(self, x):
        x = torch.relu(self.squeeze(x))
        x = torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], 1)
        return self.head(x).mean((2, 3))


def kept_filters(model, name):
    return int(model.get_submodule(name).weight.detach().flatten(1).ne(0).any(1).sum())


def test_each_producer_of_a_concatenation_keeps_half_at_50_percent():
    torch.manual_seed(0)
    model = Fire()
    with torch.no_grad():  # the 3x3 filters have far larger norms: one ranking would empty the 1x1
        model.expand3x3.weight.mul_(10)
    prune(model, torch.randn(2, 3, 8, 8), "filter", 0.5)
    assert kept_filters(model, "expand1x1") == 8
    assert kept_filters(model, "expand3x3") == 8
    assert kept_filters(model, "squeeze") == 4
