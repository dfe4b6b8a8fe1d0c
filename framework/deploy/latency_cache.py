"""Latency tables cached on disk per model, runtime, thread count and machine fingerprint; a stale
one (another architecture, machine or library version) is measured again and the reason said."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from framework.analysis import cost
from framework.deploy.errors import DeployError
from framework.deploy.latency_measure import (
    build_latency_table,
    clock_problem,
    describe_layers,
    model_key,
    runtime_problem,
)
from framework.deploy.machine import machine_fingerprint
from framework.pruning.budget.latency_table import LatencyTable
from framework.pruning.graph.dependency import build_dependency_graph

log = logging.getLogger(__name__)


@dataclass
class CachedTable:
    """A table from :func:`cached_latency_table`: ``status`` is ``"cached"`` (read back),
    ``"measured"`` (no table before) or ``"rebuilt"`` (the one on disk was stale: ``reason``)."""

    table: LatencyTable
    path: Path
    status: str
    reason: str | None = None


def table_path(cache_dir: str | Path, name: str, runtime: str, threads: int, batch: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Path(cache_dir) / f"{safe}-{runtime}-t{threads}-b{batch}.json"


def stale_reason(table: LatencyTable, key: str, machine: Mapping[str, Any]) -> str | None:
    """Why a table read from disk no longer describes this model on this machine (None: it does)."""
    if table.model_key != key:
        return "the model's layers or widths differ from the ones it was measured for"
    changed = [k for k in sorted(set(machine) | set(table.machine)) if machine.get(k) != table.machine.get(k)]
    if changed:
        shown = "; ".join(f"{k}: {table.machine.get(k)!r} -> {machine.get(k)!r}" for k in changed[:3])
        return f"it was measured on another machine or software ({shown})"
    return None


def cached_latency_table(
    model: nn.Module,
    sample_shape: Sequence[int],
    cache_dir: str | Path,
    name: str,
    runtime: str = "eager",
    threads: int | None = None,
    batch: int = 1,
    clock: str = "wall",
    **measure: Any,
) -> CachedTable:
    """The latency table of ``model`` from ``cache_dir`` when one was measured for this model,
    runtime and machine; else measured now (:func:`build_latency_table`, ``measure`` passed on)
    and saved there. A stale table (another architecture, machine, thread count or library
    version) is rebuilt and the reason logged as a warning."""
    threads = threads or torch.get_num_threads()
    problem = runtime_problem(runtime) or clock_problem(clock, threads, runtime)
    if problem:
        raise DeployError(problem)
    shape = tuple(sample_shape)
    work, graph, key = _described(model, shape, batch)
    path = table_path(cache_dir, name, runtime, threads, batch)
    stored, reason = _stored(path, key, machine_fingerprint(runtime, threads, clock))
    if stored is not None:
        return CachedTable(stored, path, "cached")
    if reason is not None:
        log.warning("latency table %s is stale: %s; measuring it again", path, reason)
    table = build_latency_table(work, shape, runtime, threads, batch, graph=graph, clock=clock, **measure)
    table.save(path)
    return CachedTable(table, path, "rebuilt" if reason else "measured", reason)


def existing_latency_table(
    model: nn.Module,
    sample_shape: Sequence[int],
    cache_dir: str | Path,
    name: str,
    runtime: str = "eager",
    threads: int | None = None,
    batch: int = 1,
) -> LatencyTable | None:
    """The table :func:`cached_latency_table` would read back, without measuring one: None when
    there is none, or it is stale (nothing is logged: the caller did not ask for a table)."""
    threads = threads or torch.get_num_threads()
    path = table_path(cache_dir, name, runtime, threads, batch)
    if not path.is_file():
        return None  # the common case, answered without tracing the model
    _, _, key = _described(model, tuple(sample_shape), batch)
    stored, _ = _stored(path, key, machine_fingerprint(runtime, threads, "wall"))
    return stored


def _described(model: nn.Module, shape: tuple[int, ...], batch: int):
    """An eval copy of ``model`` on the CPU, its dependency graph and its :func:`model_key`."""
    work = copy.deepcopy(model).cpu().eval()
    example = cost.example_input(work, shape, batch_size=max(batch, 1))
    graph = build_dependency_graph(work, example, warn=False)
    groups, layers = describe_layers(work, example, graph)
    return work, graph, model_key(groups, layers, shape, batch)


def _stored(path: Path, key: str, machine: Mapping[str, Any]) -> tuple[LatencyTable | None, str | None]:
    """(the table at ``path`` when it describes this model and machine, why not otherwise)."""
    if not path.is_file():
        return None, None
    try:
        stored = LatencyTable.load(path)
    except (ValueError, KeyError, TypeError) as error:
        return None, f"it cannot be read ({error})"
    reason = stale_reason(stored, key, machine)
    return (stored, None) if reason is None else (None, reason)
