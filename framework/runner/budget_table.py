"""The cost table a ``pruner.budget`` allocates widths by, built before any data is read.

``budget=macs|params``: counted from the layers' shapes. ``budget=latency``: read from
``pruner.latency_table`` when given (a table measured elsewhere, or a synthetic one), else measured
on this machine for ``pruner.latency_runtime`` at the run's thread count and cached under
``<paths.output_dir>/latency_tables`` (a stale one is measured again, and the log says why). The
table and its plot go to the run's pruning folder, which the trackers keep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig

from framework.errors import ConfigError
from framework.process.distributed import DistContext
from framework.pruning.budget.latency_table import LatencyTable
from framework.pruning.spec import LATENCY_BUDGET, MACS_BUDGET, PARAMS_BUDGET
from framework.run_context import RunContext

log = logging.getLogger(__name__)

TABLE_FILE, PLOT_FILE = "latency_table.json", "latency_table.png"
CACHE_FOLDER = "latency_tables"


def check_budget_fits_the_job(cfg: DictConfig, ddp: DistContext) -> None:
    """Under torchrun every rank would measure its own latency table (two processes timing the same
    cores at once) and allocate other widths from it; the masks of the ranks must agree. One table
    measured once, given to every rank as a file, is the same on all of them."""
    if ddp.enabled and cfg.pruner.get("budget") == LATENCY_BUDGET and not cfg.pruner.get("latency_table"):
        raise ConfigError(
            f"pruner.budget=latency under torchrun needs pruner.latency_table=<file> (each of the "
            f"{ddp.world_size} ranks would measure its own table and choose other widths); measure it once "
            f"with python run.py (it is cached under <paths.output_dir>/{CACHE_FOLDER}/) and pass that file"
        )


def budget_cost_table(
    cfg: DictConfig, model: torch.nn.Module, input_shape: Sequence[int], context: RunContext | None = None
) -> LatencyTable | None:
    """The table of ``pruner.budget`` (None without a budget); with ``context``, saved and drawn
    into the run's pruning folder."""
    budget = cfg.pruner.get("budget")
    if budget not in (MACS_BUDGET, PARAMS_BUDGET, LATENCY_BUDGET):
        return None  # no budget, or a wrong one the pruner's rules answer
    if budget in (MACS_BUDGET, PARAMS_BUDGET):
        from framework.deploy.mac_table import mac_table, params_table

        return (mac_table if budget == MACS_BUDGET else params_table)(model, input_shape)
    path = cfg.pruner.get("latency_table")
    runtime = cfg.pruner.get("latency_runtime", "eager")
    table = _read_table(str(path), runtime) if path else _measured_table(cfg, model, input_shape, runtime)
    if context is not None:
        _keep(table, context.pruning)
    return table


def _read_table(path: str, runtime: str) -> LatencyTable:
    from framework.deploy.machine import machine_fingerprint

    if not Path(path).is_file():
        raise ConfigError(f"pruner.latency_table={path} is not a file; allowed: a latency table's JSON, or null")
    try:
        table = LatencyTable.load(path)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"pruner.latency_table={path} is not a latency table ({error})") from None
    if table.runtime != runtime:
        raise ConfigError(
            f"pruner.latency_table={path} was measured for runtime {table.runtime}, not "
            f"pruner.latency_runtime={runtime}; allowed: a table of this runtime, or latency_table=null"
        )
    here = machine_fingerprint(runtime, table.threads, table.machine.get("clock", "wall"))
    changed = sorted(k for k in set(here) | set(table.machine) if here.get(k) != table.machine.get(k))
    if changed:
        log.warning(
            "pruner.latency_table=%s was measured on another machine or software (%s differ); its milliseconds "
            "may not hold here (latency_table=null measures this machine's)",
            path,
            ", ".join(changed),
        )
    return table


def _measured_table(cfg: DictConfig, model: torch.nn.Module, input_shape: Sequence[int], runtime: str) -> LatencyTable:
    from framework.deploy.errors import DeployError
    from framework.deploy.latency_cache import cached_latency_table
    from framework.deploy.latency_measure import runtime_problem

    problem = runtime_problem(runtime)
    if problem:
        raise ConfigError(f"pruner.latency_runtime={runtime}: {problem}")
    cache = Path(cfg.paths.output_dir) / CACHE_FOLDER
    try:
        cached = cached_latency_table(model, input_shape, cache, type(model).__name__, runtime=runtime)
    except DeployError as error:
        raise ConfigError(str(error)) from None
    log.info("latency table %s: %s (%s)", cached.path, cached.status, cached.reason or "for this model and machine")
    return cached.table


def _keep(table: LatencyTable, folder: Path) -> None:
    from framework.analysis.latency_plots import plot_latency_table

    folder.mkdir(parents=True, exist_ok=True)
    table.save(folder / TABLE_FILE)
    plot_latency_table(table, folder / PLOT_FILE, title=f"latency against width ({table.runtime})")


def latency_measurer(
    cfg: DictConfig,
    model: torch.nn.Module,
    input_shape: Sequence[int],
    cost_table: LatencyTable | None,
    ddp: DistContext,
) -> Callable[[Mapping[str, int]], float] | None:
    """With ``budget=latency`` and a table measured on this machine: the thinned model's measurement
    the pruner checks each allocation with (:mod:`framework.pruning.budget.remeasure`). None under
    torchrun (each rank would time its own and the ranks' masks differ) and for a table of another
    machine (a table measured on the deployment machine is not corrected by this one's times)."""
    if cfg.pruner.get("budget") != LATENCY_BUDGET or cost_table is None or cost_table.unit != "ms":
        return None
    from framework.deploy.latency_check import width_measurer
    from framework.deploy.machine import machine_fingerprint

    here = machine_fingerprint(cost_table.runtime, cost_table.threads, cost_table.machine.get("clock", "wall"))
    if ddp.enabled or here != cost_table.machine:
        why = "under torchrun" if ddp.enabled else "the table was measured on another machine or software"
        log.info("latency allocation: the table's predictions are used as they are (%s; nothing measured here)", why)
        return None
    return width_measurer(cost_table, model, input_shape)


def run_latency_table(
    cfg: DictConfig, model: torch.nn.Module, input_shape: Sequence[int], cost_table: LatencyTable | None, thins: bool
) -> LatencyTable | None:
    """The latency table a run predicts by besides its budget: the run's own with
    ``budget=latency``; else ``pruner.latency_table`` when given; else, for
    ``sensitivity.budget_kind=latency_ms``, one measured here (cached); else, for a training run
    that thins, one measured earlier for this model, ``pruner.latency_runtime`` and thread count
    in the cache (never measured for it: a run that asked for no table does not pay for one)."""
    if cost_table is not None and cost_table.unit == "ms":
        return cost_table
    runtime = cfg.pruner.get("latency_runtime", "eager")
    path = cfg.pruner.get("latency_table")
    latency_analysis = cfg.task == "sensitivity" and cfg.sensitivity.budget_kind == "latency_ms"
    if latency_analysis and cfg.sensitivity.budget is not None:
        if path:
            table = _model_table(str(path), runtime, model, input_shape)
        else:
            table = _measured_table(cfg, model, input_shape, runtime)
        _check_reach(table, float(cfg.sensitivity.budget))
        return table
    if cfg.task != "train" or not thins:
        return None
    if path:
        return _model_table(str(path), runtime, model, input_shape)
    from framework.deploy.latency_cache import existing_latency_table

    cache = Path(cfg.paths.output_dir) / CACHE_FOLDER
    cached = existing_latency_table(model, input_shape, cache, type(model).__name__, runtime=runtime)
    if cached is not None:
        log.info("latency table %s found in %s: the thinned model's latency is predicted by it", runtime, cache)
    return cached


def _model_table(path: str, runtime: str, model: torch.nn.Module, input_shape: Sequence[int]) -> LatencyTable:
    """``pruner.latency_table`` read and checked to describe ``model`` (one line otherwise)."""
    import copy

    from framework.analysis.cost import example_input
    from framework.errors import PruningError
    from framework.pruning.budget.engine import check_table
    from framework.pruning.graph.dependency import build_dependency_graph

    table = _read_table(path, runtime)
    work = copy.deepcopy(model).cpu().eval()
    graph = build_dependency_graph(work, example_input(work, tuple(input_shape)), warn=False)
    try:
        check_table(table, graph, f"pruner.latency_table={path}")
    except PruningError as error:
        raise ConfigError(str(error)) from None
    return table


def _check_reach(table: LatencyTable, budget_ms: float) -> None:
    """``sensitivity.budget`` in milliseconds within what the table's widths can reach."""
    dense, smallest = table.predict(), table.smallest_ms()
    if not smallest <= budget_ms < dense:
        raise ConfigError(
            f"sensitivity.budget={budget_ms:g} (latency_ms) is out of the latency table's reach: the dense model is "
            f"predicted at {dense:.4g} ms, every group at its narrowest measured width at {smallest:.4g} ms; "
            f"allowed: a budget in [{smallest:.4g}, {dense:.4g})"
        )
