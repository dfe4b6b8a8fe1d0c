"""``sensitivity.budget_kind=latency_ms``: per-unit levels whose model a latency table predicts to
run within a number of milliseconds, chosen from the one-unit-at-a-time curves.

A unit of coupled filter/channel pruning is a dependency group; pruning it to a level leaves the
group a width, and the latency table (:mod:`framework.pruning.budget.latency_table`) predicts the
model's latency for any widths at once, interactions included (a conv between two pruned groups
shrinks along both sides). So each (unit, level) is pruned alone once to read its width, and the
greedy then works on predictions only: starting from nothing pruned, it raises the one unit whose
next level costs the least top-1 (the one-shot drop, non-decreasing over levels) per millisecond
it saves at the current levels of the others, until the predicted latency is within the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from framework.analysis.sensitivity import (
    Analysis,
    Derived,
    Row,
    SensitivityError,
    Totals,
    Unit,
    drop_curves,
    pruning_only,
)
from framework.pruning.budget.latency_table import LatencyTable, named_groups
from framework.pruning.graph.groups import DependencyGraph
from framework.pruning.thinning.thin import channels_removed

LATENCY_MS = "latency_ms"


def group_widths(graph: DependencyGraph, masks: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Each prunable group's (:func:`named_groups`) channels that ``masks`` keep, as thinning would."""
    gone = dict(zip((id(g) for g in graph.groups), channels_removed(graph, masks)))
    return {name: len(group.prunable) - int(gone[id(group)].sum()) for name, group in named_groups(graph).items()}


def unit_widths(analysis: Analysis, units: Sequence[Unit], levels: Sequence[float]) -> dict[tuple[str, float], dict]:
    """``{(unit, level): {group: width}}``: the groups whose width pruning that unit alone to that
    level changes (the model is restored after each)."""
    graph = analysis.engine.graph
    full = {name: len(group.prunable) for name, group in named_groups(graph).items()}
    widths = {}
    try:
        for unit in units:
            for level in levels:
                analysis.restore()
                with pruning_only(analysis.engine, unit, {name: level for name in unit.weights}):
                    analysis.engine.update_masks(analysis.engine.schedule.starting_epoch)
                    now = group_widths(graph, analysis.engine.masks)  # the unit's own masks, dropped on exit
                widths[(unit.name, round(float(level), 6))] = {g: w for g, w in now.items() if w != full[g]}
    finally:
        analysis.restore()
    return widths


def derive_latency_levels(
    rows: Sequence[Row],
    units: Sequence[Unit],
    budget_ms: float,
    table: LatencyTable,
    widths: Mapping[tuple[str, float], Mapping[str, int]],
    measure: Callable[[Mapping[str, float]], tuple[int, int, int]],
    totals: Totals,
) -> Derived:
    """Per-unit levels predicted to run within ``budget_ms`` (see the module docstring)."""
    _, curves = drop_curves(rows, units)
    current = {u.name: (0.0, 0.0) for u in units}  # level, drop

    def predicted(levels: Mapping[str, tuple[float, float]]) -> float:
        merged: dict[str, int] = {}
        for unit, (level, _) in levels.items():
            if level > 0:
                merged.update(widths.get((unit, round(level, 6)), {}))
        return table.predict({g: w for g, w in merged.items() if g in table.groups})

    now = predicted(current)
    while now > budget_ms:
        best = None
        for unit in units:
            level, drop = current[unit.name]
            following = [point for point in curves[unit.name] if point[0] > level][:1]
            for candidate, candidate_drop, _ in following:
                after = predicted({**current, unit.name: (candidate, candidate_drop)})
                saved = now - after
                if saved <= 0:
                    continue  # a level that saves no time is never worth its accuracy
                key = ((candidate_drop - drop) / saved, -saved)
                if best is None or key < best[0]:
                    best = (key, unit.name, (candidate, candidate_drop), after)
        if best is None:
            top = max(level for c in curves.values() for level, _, _ in c)
            raise SensitivityError(
                f"sensitivity.budget={budget_ms:g} ({LATENCY_MS}) cannot be met with sensitivity.levels up to {top:g}: "
                f"the model is predicted at {now:.4g} ms with every unit at its highest level that saves time; "
                f"allowed: a budget >= {now:.4g} or higher levels"
            )
        current[best[1]] = best[2]
        now = best[3]
    chosen = {u: level for u, (level, _) in current.items()}
    weights = {w: chosen[u.name] for u in units for w in u.weights}
    removed_weights, removed_params, removed_macs = measure(weights)
    shares = {
        "sparsity": removed_weights / max(totals.weights, 1),
        "params": removed_params / max(totals.params, 1),
        "macs": removed_macs / max(totals.macs, 1),
    }
    drop_sum = sum(drop for _, drop in current.values())
    method = "greedy on the curves, per millisecond"
    return Derived(chosen, weights, method, LATENCY_MS, budget_ms, shares, drop_sum, now, table.predict())
