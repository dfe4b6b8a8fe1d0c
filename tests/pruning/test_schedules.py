"""Schedules: AGP values at every epoch, constant targets, validation."""

import pytest

from framework.errors import PruningError
from framework.pruning.schedules import AGPSchedule, ConstantSchedule, EpochSchedule


def test_agp_every_epoch_frequency_one():
    schedule = AGPSchedule(0.0, 0.5, starting_epoch=0, ending_epoch=10, frequency=1)
    assert schedule.span == 9
    expected = [0.5 * (1 - (1 - e / 9) ** 3) for e in range(10)]
    assert [schedule.target(e) for e in range(10)] == pytest.approx(expected)
    assert schedule.target(9) == 0.5  # exactly, not approximately
    assert schedule.target(0) == 0.0
    assert schedule.target(15) == 0.5
    assert all(schedule.is_pruning_epoch(e) for e in range(10))
    assert not schedule.is_pruning_epoch(10)


def test_agp_frequency_two_hand_computed():
    # start 0, end 10, frequency 2: scheduled 0, 2, 4, 6, 8; span = floor(9 / 2) * 2 = 8.
    schedule = AGPSchedule(0.0, 0.5, starting_epoch=0, ending_epoch=10, frequency=2)
    assert list(schedule.epochs) == [0, 2, 4, 6, 8]
    assert schedule.span == 8
    scheduled = {0: 0.0, 2: 0.2890625, 4: 0.4375, 6: 0.4921875, 8: 0.5}
    for epoch, value in scheduled.items():
        assert schedule.target(epoch) == pytest.approx(value, abs=1e-12)
        assert schedule.is_pruning_epoch(epoch)
    for epoch in (1, 3, 5, 7, 9):
        assert not schedule.is_pruning_epoch(epoch)
        assert schedule.target(epoch) == schedule.target(epoch - 1)  # holds the last update


def test_agp_with_initial_sparsity_and_late_start():
    schedule = AGPSchedule(0.2, 0.8, starting_epoch=3, ending_epoch=7, frequency=1)
    assert schedule.span == 3
    assert schedule.target(2) == 0.0  # before starting_epoch: no mask yet
    assert schedule.target(3) == pytest.approx(0.2)
    assert schedule.target(4) == pytest.approx(0.8 - 0.6 * (2 / 3) ** 3)
    assert schedule.target(5) == pytest.approx(0.8 - 0.6 * (1 / 3) ** 3)
    assert schedule.target(6) == pytest.approx(0.8)


@pytest.mark.parametrize("start,end,frequency", [(3, 4, 1), (2, 5, 5), (0, 2, 2)])
def test_span_zero_is_one_shot(start, end, frequency):
    schedule = AGPSchedule(0.1, 0.6, starting_epoch=start, ending_epoch=end, frequency=frequency)
    assert schedule.span == 0
    assert list(schedule.epochs) == [start]
    assert schedule.target(start) == 0.6
    assert schedule.target(start - 1) == 0.0
    assert schedule.target(end + 3) == 0.6


def test_per_layer_final_overrides_the_schedule_final():
    schedule = AGPSchedule(0.0, 0.5, starting_epoch=0, ending_epoch=3)
    assert schedule.target(1, final=0.9) == pytest.approx(0.9 * (1 - 0.5**3))
    assert schedule.target(2, final=0.9) == pytest.approx(0.9)


def test_constant_schedule():
    schedule = ConstantSchedule(0.4, starting_epoch=2, ending_epoch=8, frequency=3)
    assert list(schedule.epochs) == [2, 5]
    assert [schedule.target(e) for e in range(9)] == [0.0, 0.0] + [0.4] * 7
    assert schedule.target(3, final=0.7) == 0.7


def test_epoch_schedule_has_no_target():
    schedule = EpochSchedule(1, 4, 1)
    assert schedule.target(2) is None
    assert [schedule.is_pruning_epoch(e) for e in range(5)] == [False, True, True, True, False]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            dict(starting_epoch=5, ending_epoch=3),
            "schedule.ending_epoch=3 is not after schedule.starting_epoch=5; allowed: ending_epoch > starting_epoch",
        ),
        (dict(starting_epoch=2, ending_epoch=2), "schedule.ending_epoch=2 is not after"),
        (dict(frequency=0), "schedule.frequency=0 is invalid; allowed: an integer >= 1"),
        (dict(starting_epoch=-1), "schedule.starting_epoch=-1 is invalid; allowed: an integer >= 0"),
        (dict(frequency=1.5), "schedule.frequency=1.5"),
    ],
)
def test_schedule_validation(kwargs, message):
    arguments = dict(starting_epoch=0, ending_epoch=10, frequency=1) | kwargs
    with pytest.raises(PruningError) as error:
        AGPSchedule(0.0, 0.5, **arguments)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "initial,final,message",
    [
        (0.0, 1.2, "pruner.final_sparsity=1.2 is outside [0, 1)"),
        (0.0, 1.0, "pruner.final_sparsity=1.0 is outside [0, 1)"),
        (-0.1, 0.5, "pruner.initial_sparsity=-0.1 is outside [0, 1)"),
        (0.6, 0.5, "pruner.initial_sparsity=0.6 is above pruner.final_sparsity=0.5"),
    ],
)
def test_sparsity_validation(initial, final, message):
    with pytest.raises(PruningError) as error:
        AGPSchedule(initial, final, 0, 5)
    assert message in str(error.value)
