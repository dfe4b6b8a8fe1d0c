"""round_to larger than a group is said, not silently skipped (issue 21 item 9)."""

from __future__ import annotations

import pytest
import torch
from coupling_support import prune
from torch import nn


def test_round_to_larger_than_a_group_is_said_once():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 16, 3), nn.ReLU(), nn.Conv2d(16, 3, 3), nn.Flatten()
    )
    with pytest.warns(UserWarning, match=r"pruner.round_to=8 is larger than the group of 0 \(4 prunable channels\)"):
        pruner = prune(model, torch.randn(2, 1, 9, 9), "filter", 0.5, round_to=8)
    kept = int(pruner.masks["2.weight"].flatten(1).any(1).sum())
    assert kept % 8 == 0  # the group of 16 is still rounded
