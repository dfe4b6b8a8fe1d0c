"""Runs with ``pruner.budget=latency``: an AGP run ends within its latency target on a synthetic
table, keeps the table and its plot; a target out of the table's reach stops before any data."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from framework.deploy.mac_table import mac_table
from framework.errors import ConfigError
from framework.models import SimpleCNN
from framework.pruning.budget.latency_table import LatencyTable

DIGITS = (1, 8, 8)
FAST = ["tracking=none", "loader.limit_train_batches=3", "loader.limit_val_batches=1", "deploy.enabled=false"]


def synthetic_table(path) -> LatencyTable:
    """simple_cnn's MACs on digits read as milliseconds: a latency table whose figures are known."""
    table = dataclasses.replace(mac_table(SimpleCNN(10, in_channels=1), DIGITS), runtime="eager", unit="ms")
    table.save(path)
    return table


def budget_overrides(path, target: float) -> list[str]:
    return [
        *FAST,
        "pruner=agp_filter",
        "pruner.scope=global",
        "pruner.budget=latency",
        f"pruner.latency_table={path}",
        f"pruner.target_latency_ms={target}",
    ]


def test_an_agp_run_with_a_latency_budget_ends_within_its_target(run_experiment, tmp_path):
    table = synthetic_table(tmp_path / "table.json")
    target = 0.5 * table.predict()
    overrides = [*budget_overrides(tmp_path / "table.json", target), "epochs=2", "schedule.ending_epoch=2"]
    # pruner.thin=never: the widths are read from the masked weights (thinning is tested elsewhere)
    _, context, final = run_experiment([*overrides, "pruner.thin=never"])
    weights = torch.load(context.last_checkpoint, weights_only=True)["model"]
    widths = {name: int(weights[f"{name}.weight"].flatten(1).any(1).sum()) for name in table.groups}
    assert widths != {n: g.full for n, g in table.groups.items()}
    assert table.predict(widths) <= target + 1e-9
    # the run logged the prediction for those widths beside the target it met
    assert final["budget/predicted_ms"] == pytest.approx(table.predict(widths))
    assert final["budget/target_ms"] == pytest.approx(target) and final["budget/dense_ms"] == pytest.approx(
        table.predict()
    )
    # the table the run allocated by and its plot are kept with the run's pruning reports
    assert LatencyTable.load(context.pruning / "latency_table.json").predict() == pytest.approx(table.predict())
    assert (context.pruning / "latency_table.png").stat().st_size > 1000


def test_a_latency_target_below_the_smallest_widths_stops_before_any_data(run_experiment, tmp_path):
    table = synthetic_table(tmp_path / "table.json")
    with pytest.raises(ConfigError, match=r"below what the smallest allowed widths reach \(\d"):
        run_experiment([*budget_overrides(tmp_path / "table.json", 0.01 * table.predict()), "epochs=2"])
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
