"""Tiny models whose values are known by hand, shared by the criterion and regularizer tests."""

from __future__ import annotations

import torch
from torch import nn


class TwoLayer(nn.Module):
    """x -> fc1 (3x2) -> fc2 (1x3), no biases: W1 = [[1, 2], [0, 1], [3, -1]], W2 = [[1, -4, 0.5]].
    With L = sum(output), dL/dW1[o, i] = W2[0, o]·x_i and dL/dW2[0, o] = h_o, h = W1 x."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.fc2 = nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]]))
            self.fc2.weight.copy_(torch.tensor([[1.0, -4.0, 0.5]]))

    def forward(self, x):
        return self.fc2(self.fc1(x))
