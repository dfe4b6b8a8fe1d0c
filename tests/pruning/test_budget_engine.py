"""``pruner.budget``: the spec's rules, and the budget engine reaching its cost target under AGP on a
synthetic latency table (framework.pruning.budget.engine)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from framework.deploy.mac_table import mac_table
from framework.errors import PruningError
from framework.pruning import build_pruner
from framework.pruning.budget.engine import BudgetPruningEngine
from framework.pruning.budget.latency_table import LatencyTable
from framework.pruning.spec import PrunerSpec

SHAPE = (3, 8, 8)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(24)
        self.fc = nn.Linear(24, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def synthetic_latency(model: nn.Module) -> LatencyTable:
    """A latency table with known figures: the model's MACs read as milliseconds."""
    return dataclasses.replace(mac_table(model, SHAPE), runtime="eager", unit="ms")


BUDGET = dict(method="agp", structure="filter", scope="global", budget="latency", starting_epoch=0, ending_epoch=3)


@pytest.mark.parametrize(
    "fields, expected",
    [
        (dict(budget="time"), "pruner.budget='time' is invalid; allowed: null | macs | params | latency"),
        (dict(budget="params", scope="layer"), "pruner.budget=params allocates widths across the whole model"),
        (dict(target_latency_ms=0), "pruner.target_latency_ms=0 is invalid; allowed: null or a number"),
        (dict(target_latency_ms=-2.0), "pruner.target_latency_ms=-2.0 is invalid"),
        (dict(scope="layer"), "pruner.budget=latency allocates widths across the whole model; it needs pruner.scope"),
        (dict(structure="fine"), "allocates the widths of coupled groups"),
        (dict(structure="head"), "allocates the widths of coupled groups"),
        (dict(latency_runtime="tpu"), "pruner.latency_runtime='tpu' is invalid; allowed: eager | onnx_fp32"),
        (dict(budget="macs", target_latency_ms=3.0), "pruner.target_latency_ms=3.0 needs pruner.budget=latency"),
    ],
)
def test_a_budget_setting_out_of_its_rules_is_one_line(fields, expected):
    problems = PrunerSpec(**{**BUDGET, **fields}).problems()
    assert len(problems) == 1 and expected in problems[0], problems


def test_an_agp_run_with_a_latency_budget_ends_within_its_target_on_a_synthetic_table():
    model = Net()
    table = synthetic_latency(model)
    target = 0.45 * table.predict()
    pruner = build_pruner(model, cost_table=table, target_latency_ms=target, input_shape=SHAPE, **BUDGET)
    assert isinstance(pruner, BudgetPruningEngine)
    predicted = []
    for epoch in range(3):
        pruner.on_epoch_start(epoch)
        predicted.append(pruner.predicted_cost)
    # AGP: the cost falls at each pruning moment and the last one meets the target
    assert predicted[0] > predicted[1] > predicted[2] and predicted[2] <= target + 1e-9
    assert predicted[2] >= 0.85 * target  # the greedy spends the budget, it does not overshoot it wholesale
    kept = {name: int(pruner.store.get(f"{name}.weight").flatten(1).any(1).sum()) for name in ("conv1", "conv2")}
    assert table.predict(kept) == pytest.approx(predicted[2])


def test_a_macs_budget_takes_the_share_of_the_counted_macs():
    model = Net()
    table = mac_table(model, SHAPE)
    pruner = build_pruner(
        model, cost_table=table, final_sparsity=0.5, input_shape=SHAPE, **{**BUDGET, "budget": "macs"}
    )
    for epoch in range(3):
        pruner.on_epoch_start(epoch)
    assert pruner.predicted_cost <= 0.5 * table.predict() + 1e-9


def test_a_latency_target_out_of_reach_names_the_minimum_measured():
    model = Net()
    table = synthetic_latency(model)
    with pytest.raises(PruningError, match=r"pruner.target_latency_ms=0.001 is below what the smallest allowed widths"):
        build_pruner(model, cost_table=table, target_latency_ms=0.001, input_shape=SHAPE, **BUDGET)
    with pytest.raises(PruningError, match=r"is not below the dense model's"):
        build_pruner(model, cost_table=table, target_latency_ms=10 * table.predict(), input_shape=SHAPE, **BUDGET)
    with pytest.raises(PruningError, match=r"needs the model's cost_table"):
        build_pruner(model, target_latency_ms=1.0, input_shape=SHAPE, **BUDGET)


def test_a_table_of_another_model_is_refused():
    table = synthetic_latency(Net())
    other = Net()
    other.conv1 = nn.Conv2d(3, 12, 3, padding=1)
    other.bn1 = nn.BatchNorm2d(12)
    other.conv2 = nn.Conv2d(12, 24, 3, padding=1)
    with pytest.raises(PruningError, match=r"describes another model: its group 'conv1' has 16 channels"):
        build_pruner(other, cost_table=table, final_sparsity=0.3, input_shape=SHAPE, **BUDGET)


def test_a_measured_latency_allocation_is_corrected_and_logs_both_predictions():
    # the "whole model" runs 30 % slower than the table says once it is pruned at all: the first
    # pruned allocation trusts the table, its measurement corrects it, the next one is kept
    model = Net()
    table = synthetic_latency(model)
    target = 0.5 * table.predict()
    measured_widths = []

    def measure(widths):
        measured_widths.append(dict(widths))
        full = all(width == table.groups[name].full for name, width in widths.items())
        return table.predict(widths) * (1.0 if full else 1.3)

    pruner = build_pruner(
        model, cost_table=table, cost_measure=measure, target_latency_ms=target, input_shape=SHAPE, **BUDGET
    )
    assert isinstance(pruner, BudgetPruningEngine)
    for epoch in range(3):
        pruner.on_epoch_start(epoch)
    metrics = pruner.cost_metrics(2)
    checked = pruner.last_measured
    assert checked is not None and checked.accepted
    # every measurement is of the table's full group widths (unselected channels counted)
    assert all(set(w) == set(table.groups) for w in measured_widths)
    kept = {name: int(pruner.store.get(f"{name}.weight").flatten(1).any(1).sum()) for name in ("conv1", "conv2")}
    assert metrics["budget/measured_ms"] == pytest.approx(measure(kept))
    assert abs(metrics["budget/error"]) <= 0.05 and metrics["budget/predicted_ms"] == pruner.predicted_cost
    assert metrics["budget/correction"] == pytest.approx(pruner.latency_correction())
    assert pruner.latency_correction() == pytest.approx(1.3)  # from the first pruned widths' measurement
    assert metrics["budget/first_predicted_ms"] > 0 and metrics["budget/rounds"] >= 1
