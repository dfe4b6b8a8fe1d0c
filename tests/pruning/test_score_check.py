"""A criterion's scores are one real number per group; NaN, another shape or a list is one line
naming the criterion (issue 21 item 5)."""

from __future__ import annotations

import pytest
import torch
from coupling_support import prune

from framework.errors import PruningError
from framework.models.simple_cnn import SimpleCNN
from framework.pruning import Criterion


class NaNScores(Criterion):
    def __call__(self, groups):
        return torch.full((groups.shape[0],), float("nan"))


class OneTooMany(Criterion):
    def __call__(self, groups):
        return groups.abs().sum(1).repeat(2)


class AList(Criterion):
    def __call__(self, groups):
        return groups.abs().sum(1).tolist()


def row_sum(groups):
    return groups.abs().sum(1)[:, None]


BAD = [
    (NaNScores(), r"pruner.criterion test_score_check.NaNScores returned NaN for \d+ of \d+ groups"),
    (
        OneTooMany(),
        r"pruner.criterion test_score_check.OneTooMany returned scores of shape \[\d+\] for \d+ groups; allowed: shape",
    ),
    (AList(), r"pruner.criterion test_score_check.AList returned a list; allowed: a tensor of \d+ scores"),
    (row_sum, r"pruner.criterion test_score_check.row_sum returned scores of shape \[\d+, 1\]"),
]


@pytest.mark.parametrize("structure, extra", [("filter", {}), ("fine", {}), ("filter", {"scope": "global"})])
@pytest.mark.parametrize("criterion, expected", BAD)
def test_a_bad_criterion_is_one_line_naming_it(structure, extra, criterion, expected):
    torch.manual_seed(0)
    model = SimpleCNN(num_classes=10, in_channels=1)
    with pytest.raises(PruningError, match=expected) as raised:
        prune(model, torch.randn(2, 1, 8, 8), structure, 0.5, criterion=criterion, **extra)
    assert "\n" not in str(raised.value)


def test_a_good_user_criterion_still_prunes():
    torch.manual_seed(0)
    model = SimpleCNN(num_classes=10, in_channels=1)
    pruner = prune(model, torch.randn(2, 1, 8, 8), "filter", 0.5, criterion=lambda groups: groups.abs().sum(1))
    assert any(bool((mask == 0).any()) for mask in pruner.masks.values())
