"""The width allocation under a budget (framework.pruning.budget.allocation) and the latency table's
prediction and steps (framework.pruning.budget.latency_table), on synthetic tables with known answers."""

from __future__ import annotations

import itertools

import pytest

from framework.pruning.budget.allocation import allocate_widths, kept_importance
from framework.pruning.budget.latency_table import Axis, Group, LatencyTable, TimedLayer, fit_rest, measured_widths


def synthetic_table(per_channel_ms: dict[str, float], full: int = 8, base_ms: float = 1.0) -> LatencyTable:
    """One layer per group, its output the group: latency ``base + per_channel_ms[g] * width``
    per layer, so the model's latency is separable and known exactly."""
    groups = {name: Group(name, full, tuple(range(1, full + 1))) for name in per_channel_ms}
    layers = []
    for name, slope in per_channel_ms.items():
        curve = {w: base_ms + slope * w for w in range(1, full + 1)}
        layers.append(
            TimedLayer(
                module=f"{name}.conv",
                in_axis=Axis(3),
                out_axis=Axis(full, group=name),
                full_ms=curve[full],
                in_curve={},
                out_curve=curve,
            )
        )
    model_ms = sum(layer.full_ms for layer in layers)
    return LatencyTable("eager", 1, 1, (3, 8, 8), groups, layers, model_ms)


def brute_force(table, importance, budget):
    names = sorted(table.groups)
    best = None
    for widths in itertools.product(*(table.groups[n].widths for n in names)):
        chosen = dict(zip(names, widths))
        if table.predict(chosen) <= budget + 1e-9:
            kept = sum(kept_importance(importance[n], chosen[n]) for n in names)
            if best is None or kept > best[0] + 1e-12:
                best = (kept, chosen)
    return best


IMPORTANCE = {
    # a: cheap channels, b: expensive ones, c: in between; each group's scores fall off
    "a": [8, 7, 6, 5, 4, 3, 2, 1],
    "b": [9, 8, 4, 3, 2, 1.5, 1, 0.5],
    "c": [5, 5, 5, 5, 1, 1, 1, 1],
}


@pytest.mark.parametrize("budget", [30.0, 22.0, 15.0, 9.5])
def test_the_solver_meets_the_budget_with_the_known_optimum(budget):
    table = synthetic_table({"a": 0.5, "b": 2.0, "c": 1.0})
    steps = {name: table.groups[name].widths for name in table.groups}
    result = allocate_widths(IMPORTANCE, table, budget, steps)
    optimum, optimal_widths = brute_force(table, IMPORTANCE, budget)
    assert result.feasible
    assert result.cost <= budget
    assert table.predict(result.widths) == pytest.approx(result.cost)
    assert result.importance_kept == pytest.approx(optimum), (result.widths, optimal_widths)


def test_an_unreachable_budget_is_reported_with_the_narrowest_widths():
    table = synthetic_table({"a": 0.5, "b": 2.0})
    importance = {k: IMPORTANCE[k] for k in ("a", "b")}
    steps = {name: table.groups[name].widths for name in table.groups}
    smallest = table.smallest_ms()
    result = allocate_widths(importance, table, smallest - 0.1, steps)
    assert not result.feasible
    assert result.widths == {"a": 1, "b": 1}
    assert result.cost == pytest.approx(smallest)


def test_widths_never_grow_and_stop_at_floors():
    table = synthetic_table({"a": 1.0, "b": 1.0})
    importance = {"a": [1.0] * 5, "b": [1.0] * 8}  # a already lost 3 channels
    steps = {name: table.groups[name].widths for name in table.groups}
    result = allocate_widths(importance, table, 0.0, steps, start={"a": 5, "b": 8}, floors={"b": 3})
    assert result.widths == {"a": 1, "b": 3}
    assert all(to < frm for _, frm, to in result.steps)


def test_only_the_allowed_widths_are_taken():
    table = synthetic_table({"a": 1.0, "b": 1.0})
    importance = {"a": IMPORTANCE["a"], "b": IMPORTANCE["a"]}
    steps = {"a": (2, 4, 8), "b": (8,)}
    result = allocate_widths(importance, table, 2 + 4 + 1 + 8, steps)
    assert result.widths == {"a": 4, "b": 8}


def stair_table() -> LatencyTable:
    """One group of 16 whose layer's time only drops at multiples of 4 (a kernel that computes
    channels in blocks of 4): steps at 4, 8, 12, 16."""
    curve = {w: 1.0 + 0.5 * -(-w // 4) for w in range(1, 17)}
    layer = TimedLayer("conv", Axis(3), Axis(16, group="g"), curve[16], {}, curve)
    return LatencyTable("eager", 1, 1, (3, 8, 8), {"g": Group("g", 16, tuple(range(1, 17)))}, [layer], curve[16])


def test_latency_steps_are_the_widest_width_of_each_plateau():
    table = stair_table()
    assert table.latency_steps("g") == [4, 8, 12, 16]
    assert table.group_curve("g")[13] == table.group_curve("g")[16]


def test_a_layer_between_two_groups_scales_with_both_widths():
    # 100 ms at 8 -> 8; each side alone halves it at width 4: both at 4 is a quarter
    curve = {w: 100.0 * w / 8 for w in range(1, 9)}
    layer = TimedLayer("conv", Axis(8, group="a"), Axis(8, group="b"), 100.0, dict(curve), dict(curve))
    groups = {n: Group(n, 8, tuple(range(1, 9))) for n in ("a", "b")}
    table = LatencyTable("eager", 1, 1, (8, 4, 4), groups, [layer], 100.0)
    assert table.predict({"a": 4, "b": 4}) == pytest.approx(25.0)
    assert table.predict({"a": 4}) == pytest.approx(50.0)


def test_the_rest_is_fitted_as_a_fixed_part_and_a_part_per_volume():
    assert fit_rest([(1.0, 5.0), (0.5, 3.0), (0.25, 2.0)]) == pytest.approx((1.0, 4.0))
    assert fit_rest([(1.0, 2.0), (0.5, 3.0)]) == pytest.approx((2.5, 0.0))  # noise: a constant


def test_the_table_round_trips_through_json(tmp_path):
    table = stair_table()
    table.rest_fixed_ms, table.rest_volume_ms, table.calibration = 0.5, 0.25, [(1.0, 3.5)]
    again = LatencyTable.load(table.save(tmp_path / "t.json"))
    assert again == table


def test_measured_widths_keep_at_most_the_points_asked():
    assert measured_widths(10, 32) == tuple(range(1, 11))
    assert measured_widths(512, 32) == tuple(range(16, 513, 16))
    assert measured_widths(100, 32) == (*range(4, 101, 4),)
