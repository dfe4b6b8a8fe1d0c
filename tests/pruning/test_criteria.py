"""Criteria: scores on hand-computed groups."""

import math

import pytest
import torch

from framework.errors import PruningError
from framework.pruning.scores.criteria import build_criterion

GROUPS = torch.tensor([[1.0, -3.0], [2.0, 2.0], [0.0, 0.0]])


def test_l1_is_mean_absolute_value():
    assert build_criterion("l1")(GROUPS).tolist() == [2.0, 2.0, 0.0]


def test_l2_is_root_mean_square():
    scores = build_criterion("l2")(GROUPS)
    assert scores.tolist() == pytest.approx([math.sqrt(5.0), 2.0, 0.0])


@pytest.mark.parametrize("name", ["l1", "l2"])
def test_single_element_groups_score_magnitude(name):
    weights = torch.tensor([[-0.5], [0.25], [2.0]])
    assert build_criterion(name)(weights).tolist() == [0.5, 0.25, 2.0]


def test_random_is_reproducible_from_its_seed_and_ignores_weights():
    first = build_criterion("random", seed=3)(GROUPS)
    again = build_criterion("random", seed=3)(GROUPS * 100)
    other = build_criterion("random", seed=4)(GROUPS)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.shape == (3,) and bool(((first >= 0) & (first < 1)).all())


def test_random_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_criterion("random", seed=1)(GROUPS)
    assert torch.equal(torch.rand(3), expected)


def test_random_state_round_trip_continues_the_sequence():
    criterion = build_criterion("random", seed=7)
    criterion(GROUPS)
    state = criterion.state_dict()
    expected = criterion(GROUPS)
    resumed = build_criterion("random", seed=7)
    resumed.load_state_dict(state)
    assert torch.equal(resumed(GROUPS), expected)


def test_unknown_criterion_is_a_one_line_error():
    with pytest.raises(PruningError) as error:
        build_criterion("hessian")
    message = str(error.value)
    assert (
        "pruner.criterion='hessian'" in message
        and "l1 | l2 | random | taylor | activation_mean | apoz | bn_gamma" in message
    )
    assert "\n" not in message
