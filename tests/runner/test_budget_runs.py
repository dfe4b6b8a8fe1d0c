"""Runs with ``pruner.budget=latency``: an AGP run ends within its latency target on a synthetic
table, keeps the table and its plot; a target out of the table's reach stops before any data."""

from __future__ import annotations

import dataclasses
import logging

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


def _summary_lines(caplog) -> dict[str, str]:
    (block,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("where everything is:")]
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in block.splitlines()[1:])}


def _thinned_widths(context, table: LatencyTable) -> dict[str, int]:
    weights = torch.load(context.last_checkpoint, weights_only=True)["model"]  # the thinned model's
    return {name: int(weights[f"{name}.weight"].shape[0]) for name in table.groups}


@pytest.mark.parametrize(
    "budget, ranked_by",
    [("latency", ["pruner/criterion=taylor"]), ("macs", ["fold_batchnorm=true"])],
    ids=["latency-taylor", "macs-fold_batchnorm"],
)
def test_a_budget_run_ranked_otherwise_than_by_l1_thins_within_its_target(run_experiment, tmp_path, budget, ranked_by):
    """The allocation takes its importances from whatever the pruner ranks by: a data-aware criterion
    (scored on calibration batches) or weights seen through their folded BatchNorm."""
    table = synthetic_table(tmp_path / "table.json")  # for budget=macs it is the run's own MAC table
    target = 0.5 * table.predict()
    if budget == "latency":
        overrides = budget_overrides(tmp_path / "table.json", target)
    else:
        overrides = [
            *FAST,
            "pruner=agp_filter",
            "pruner.scope=global",
            "pruner.budget=macs",
            "pruner.final_sparsity=0.5",
        ]
    _, context, final = run_experiment([*overrides, *ranked_by, "epochs=2", "schedule.ending_epoch=2"])
    widths = _thinned_widths(context, table)
    assert widths != {n: g.full for n, g in table.groups.items()}
    assert table.predict(widths) <= target + 1e-9
    unit = "ms" if budget == "latency" else "mmac"
    assert final[f"budget/predicted_{unit}"] == pytest.approx(table.predict(widths))


def test_a_latency_budget_run_reports_the_thinned_model_s_predicted_and_measured_latency(
    run_experiment, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="framework.runner")
    table = synthetic_table(tmp_path / "table.json")
    overrides = [*budget_overrides(tmp_path / "table.json", 0.5 * table.predict()), "epochs=2", "progress=false"]
    _, context, final = run_experiment([*overrides, "deploy.enabled=true"])
    widths = _thinned_widths(context, table)
    assert widths != {n: g.full for n, g in table.groups.items()}
    # the prediction is the table's for the widths the thinned model has; the measurement is of it
    assert final["latency/predicted_ms/thinned"] == pytest.approx(table.predict(widths))
    assert final["latency/predicted_ms/dense"] == pytest.approx(table.predict())
    measured = final["latency/measured_ms/thinned"]
    assert measured > 0 and final["latency/measured_ms/dense"] > 0
    assert final["latency/error/thinned"] == pytest.approx(measured / final["latency/predicted_ms/thinned"] - 1)
    # the table was timed at 1 thread, batch 1, eager: the deploy step's fused eager variant is its match
    assert final["deploy/predicted_ms_b1/fused_fp32"] == pytest.approx(final["latency/predicted_ms/thinned"])
    predicted, deployed = final["latency/predicted_ms/thinned"], final["deploy/latency_ms_b1/fused_fp32"]
    line = _summary_lines(caplog)["latency"]
    assert line.startswith(
        f"thinned: predicted {predicted:.3g} ms, measured {measured:.3g} ms ({100 * (measured / predicted - 1):+.1f} %)"
    )
    assert f"deployed fused_fp32 (1 thread): predicted {predicted:.3g} ms, measured {deployed:.3g} ms" in line


def test_a_run_that_thins_without_a_budget_is_checked_against_a_cached_table(run_experiment, compose_config, tmp_path):
    """A table measured earlier for this model and machine (here: written into the cache as the
    measurement would) predicts the thinned model of any run that thins; none is measured for it."""
    from framework.deploy.latency_cache import existing_latency_table, table_path
    from framework.deploy.machine import machine_fingerprint

    threads = torch.get_num_threads()
    table = dataclasses.replace(
        mac_table(SimpleCNN(10, in_channels=1), DIGITS),
        runtime="eager",
        unit="ms",
        threads=threads,
        machine=machine_fingerprint("eager", threads),
    )
    output_dir = tmp_path / "outputs"
    table.save(table_path(output_dir / "latency_tables", "SimpleCNN", "eager", threads, 1))
    overrides = [*FAST, "pruner=agp_filter", "epochs=1", f"paths.output_dir={output_dir}"]
    _, context, final = run_experiment(overrides)
    assert final["latency/predicted_ms/thinned"] == pytest.approx(table.predict(_thinned_widths(context, table)))
    assert final["latency/measured_ms/thinned"] > 0
    # without a table in the cache the lookup finds none, and measures none
    empty = tmp_path / "empty"
    assert existing_latency_table(SimpleCNN(10, in_channels=1), DIGITS, empty, "SimpleCNN", threads=threads) is None
    assert not empty.exists()


def _conv_linear_params(weights) -> int:
    """Weights and biases of the Conv/Linear layers (the ones with a weight of two dimensions or more)."""
    layers = [name[: -len(".weight")] for name, w in weights.items() if name.endswith(".weight") and w.dim() >= 2]
    return sum(
        weights[f"{layer}.weight"].numel() + (weights[f"{layer}.bias"].numel() if f"{layer}.bias" in weights else 0)
        for layer in layers
    )


def test_a_params_budget_run_ends_with_the_share_of_parameters_it_asked_for(run_experiment):
    overrides = [*FAST, "pruner=agp_filter", "pruner.scope=global", "pruner.budget=params", "pruner.final_sparsity=0.6"]
    _, context, final = run_experiment([*overrides, "epochs=2", "schedule.ending_epoch=2"])
    dense = _conv_linear_params(SimpleCNN(10, in_channels=1).state_dict())
    thinned = _conv_linear_params(torch.load(context.last_checkpoint, weights_only=True)["model"])
    # counted on the thinned model itself: at most 40 % of the dense Conv/Linear parameters, and
    # not far below (the greedy spends the budget, its refill pass takes back the last overshoot)
    assert 0.3 * dense < thinned <= 0.4 * dense
    assert final["budget/predicted_mparams"] == pytest.approx(thinned / 1e6)
    assert final["budget/dense_mparams"] == pytest.approx(dense / 1e6)


def test_a_latency_table_of_another_model_is_one_line_before_any_data(run_experiment, tmp_path):
    """Without a budget the table only predicts the thinned model, and is still checked up front."""
    other = dataclasses.replace(mac_table(SimpleCNN(10, 1, width=0.5), DIGITS), runtime="eager", unit="ms")
    other.save(tmp_path / "other.json")
    overrides = [*FAST, "pruner=agp_filter", "epochs=1", f"pruner.latency_table={tmp_path / 'other.json'}"]
    with pytest.raises(ConfigError, match=r"describes another model: its group 'block1.0' has 16 channels"):
        run_experiment(overrides)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_latency_budget_under_torchrun_needs_one_table_for_every_rank(compose_config, tmp_path):
    # Each rank measuring its own table would allocate its own widths; the ranks' masks must agree.
    from framework.process.distributed import SINGLE, DistContext
    from framework.runner.budget_table import check_budget_fits_the_job

    cfg = compose_config(["pruner=agp_filter", "pruner.scope=global", "pruner.budget=latency"])
    check_budget_fits_the_job(cfg, SINGLE)  # one process measures its own table
    with pytest.raises(ConfigError) as info:
        check_budget_fits_the_job(cfg, DistContext(rank=1, world_size=2))
    assert str(info.value).startswith("pruner.budget=latency under torchrun needs pruner.latency_table=<file>")
    assert "\n" not in str(info.value)
    table = tmp_path / "table.json"
    table.write_text("{}")
    given = compose_config(
        ["pruner=agp_filter", "pruner.scope=global", "pruner.budget=latency", f"pruner.latency_table={table}"]
    )
    check_budget_fits_the_job(given, DistContext(rank=1, world_size=2))  # one file: the same table on every rank


def test_only_a_table_of_this_machine_in_one_process_is_checked_by_measuring(compose_config, tmp_path):
    """The run's allocations are measured (framework.pruning.budget.remeasure) with a table measured
    on this machine; a table of another machine, or ranks under torchrun, use the table as it is."""
    from framework.deploy.machine import machine_fingerprint
    from framework.process.distributed import SINGLE, DistContext
    from framework.runner.budget_table import latency_measurer

    model = SimpleCNN(10, in_channels=1)
    other = synthetic_table(tmp_path / "table.json")  # no machine recorded: another one
    here = dataclasses.replace(other, machine=machine_fingerprint("eager", other.threads, "wall"))
    cfg = compose_config(["pruner=agp_filter", "pruner.scope=global", "pruner.budget=latency"])
    assert latency_measurer(cfg, model, DIGITS, other, SINGLE) is None
    assert latency_measurer(cfg, model, DIGITS, here, DistContext(rank=0, world_size=2)) is None
    measure = latency_measurer(cfg, model, DIGITS, here, SINGLE)
    assert measure is not None
    full = {name: group.full for name, group in here.groups.items()}
    half = {name: max(1, width // 2) for name, width in full.items()}
    # in the table's milliseconds (its dense prediction times the ratio measured), for any widths
    assert measure(full) > 0 and measure(half) > 0
