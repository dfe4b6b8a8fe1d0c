"""Step-level AGP: re-ranking every ``step_frequency`` optimizer steps at fractional epochs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning import build_pruner


def cubic(fractional, s_i, s_f, start, span):
    return s_f + (s_i - s_f) * (1 - min(max(fractional - start, 0), span) / span) ** 3


def test_masks_follow_the_cubic_ramp_between_epochs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 50))
    pruner = build_pruner(model, method="agp", final_sparsity=0.8, starting_epoch=0, ending_epoch=3, step_frequency=5)
    weight = model[0].weight
    steps_per_epoch = 10
    seen = []
    for epoch in range(4):
        pruner.on_epoch_start(epoch)
        for step in range(1, steps_per_epoch + 1):
            target = pruner.on_step(epoch, step, steps_per_epoch)
            zeros = int((weight == 0).sum())
            if target is not None:
                fractional = epoch + step / steps_per_epoch
                expected = cubic(fractional, 0.0, 0.8, 0, 2)  # span = last scheduled epoch 2 - 0
                assert target == pytest.approx(expected)
                assert zeros == math.floor(expected * weight.numel() + 0.5), fractional
                seen.append(fractional)
            with torch.no_grad():  # training moves the weights; pruned ones must stay pruned
                weight.add_(torch.randn_like(weight) * 0.01)
            pruner.after_step()
    # re-ranked at mid-epoch of epochs 0 and 1 only; epoch 2 starts at the final target
    assert seen == [0.5, 1.5]
    assert pruner.sparsity()["total"] == pytest.approx(0.8)


def test_step_frequency_is_validated():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(PruningError, match="schedule.step_frequency=0 is invalid"):
        build_pruner(model, method="agp", step_frequency=0)
    with pytest.raises(PruningError, match="applies to pruner.method=agp only"):
        build_pruner(model, method="level", step_frequency=5)
