"""An allocation checked by measuring the whole model (framework.pruning.budget.remeasure): on a
synthetic layer table with a step the whole model does not have, the first allocation picks that
step, its measurement says so, and the corrected prediction is accepted and logged with the first."""

from __future__ import annotations

import pytest

from framework.pruning.budget.allocation import allocate_widths
from framework.pruning.budget.latency_table import Axis, Group, LatencyTable, TimedLayer
from framework.pruning.budget.remeasure import TOLERANCE, measured_allocation

FULL = 8
SLOPES = {"a": 0.5, "b": 2.0, "c": 1.0}  # ms per channel of each group's one layer
IMPORTANCE = {"a": [8, 7, 6, 5, 4, 3, 2, 1], "b": [9, 8, 4, 3, 2, 1.5, 1, 0.5], "c": [5, 5, 5, 5, 1, 1, 1, 1]}


def table(step_at: int | None = None) -> LatencyTable:
    """Each group's layer costs ``1 + slope * width`` ms: the whole model. With ``step_at``, the
    layer table's view of it: group b's layer timed alone drops to 40 % of that at ``step_at``
    channels and below (a per-layer step the whole model lacks)."""
    groups = {name: Group(name, FULL, tuple(range(1, FULL + 1))) for name in SLOPES}
    layers = []
    for name, slope in SLOPES.items():
        curve = {w: 1.0 + slope * w for w in range(1, FULL + 1)}
        if name == "b" and step_at is not None:
            curve = {w: t * (0.4 if w <= step_at else 1.0) for w, t in curve.items()}
        layers.append(TimedLayer(f"{name}.conv", Axis(3), Axis(FULL, group=name), curve[FULL], {}, curve))
    return LatencyTable("eager", 1, 1, (3, 8, 8), groups, layers, sum(layer.full_ms for layer in layers))


def test_an_optimistic_step_is_measured_corrected_and_both_predictions_logged():
    layers, whole = table(step_at=4), table()
    steps = {name: layers.latency_steps(name) for name in layers.groups}
    target = 18.0

    def solve(budget):
        return allocate_widths(IMPORTANCE, layers, budget, steps)

    result = measured_allocation(solve, whole.predict, target)
    first = result.first
    assert first.widths["b"] <= 4 and first.scale == 1.0  # the table's own pick: at its step
    assert first.error > TOLERANCE  # measured slower than predicted, beyond the tolerance
    assert len(result.rounds) >= 2 and result.accepted
    # the second round's prediction is the table rescaled by what the first widths measured
    assert result.rounds[1].scale == pytest.approx(first.measured_ms / first.table_ms)
    kept = result.last
    assert abs(kept.measured_ms / kept.predicted_ms - 1) <= TOLERANCE
    assert kept.measured_ms == whole.predict(result.allocation.widths)
    assert kept.measured_ms < first.measured_ms  # the corrected widths are faster, measured
    metrics = result.metrics()
    assert metrics["budget/first_predicted_ms"] == pytest.approx(first.table_ms)
    assert metrics["budget/predicted_ms"] == pytest.approx(kept.predicted_ms)
    assert metrics["budget/measured_ms"] == kept.measured_ms
    assert metrics["budget/rounds"] == len(result.rounds)
    assert "accepted" in result.describe()


def test_a_prediction_within_the_tolerance_is_accepted_without_a_second_round():
    exact = table()
    steps = {name: exact.groups[name].widths for name in exact.groups}
    result = measured_allocation(lambda b: allocate_widths(IMPORTANCE, exact, b, steps), exact.predict, 18.0)
    assert len(result.rounds) == 1 and result.accepted and result.last.error == pytest.approx(0.0)


def test_when_no_round_comes_within_the_tolerance_the_closest_is_kept():
    exact = table()
    steps = {name: exact.groups[name].widths for name in exact.groups}
    noisy = iter([1.5, 1.2, 1.45, 1.1])  # a machine that measures every widths 20-50 % slow, differently each time

    def measure(widths):
        return next(noisy) * exact.predict(widths)

    result = measured_allocation(lambda b: allocate_widths(IMPORTANCE, exact, b, steps), measure, 18.0, max_rounds=3)
    errors = [abs(r.error) for r in result.rounds]
    assert len(result.rounds) == 4 and not result.accepted
    assert result.kept == errors.index(min(errors)) and "closest" in result.describe()
