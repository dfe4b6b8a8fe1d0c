"""``budget=macs|params|latency``: one allocation of widths across dependency groups, counted in MACs
or parameters or in measured milliseconds, instead of a share of the weights.

At each pruning moment the schedule gives a fraction ``s`` (AGP: rising to ``final_sparsity``;
with ``target_latency_ms`` the final fraction is ``1 - target / predicted dense latency``). The
budget is ``(1 - s)`` of the dense model's cost in the cost table (a latency table measured on the
machine, or a MAC or parameter table counted from the layers' shapes). Every coupled channel is scored as
``scope=global`` scores them (the criterion on the ranking view, normalised per layer, reduced over
members), and :func:`~.allocation.allocate_widths` picks each group's width by importance per
unit of cost, among the widths where latency actually drops (:meth:`~.latency_table.LatencyTable.latency_steps`;
every width for MACs and parameters). Each group then keeps its highest-scored alive channels; masks never regrow,
so an allocation starts from the current widths. The last prediction is kept as
``predicted_cost`` for the run's reports. With ``cost_measure`` (``budget=latency``, a table of
this machine, one process) each allocation's widths are measured whole and the prediction corrected
before they are accepted (:mod:`.remeasure`); the correction carries to the next pruning moment.

Two choices, both measured in an earlier session (resnet18 on digits; not yet in BENCHMARKS.md): a channel's importance is its
score times the number of layer slices it removes (a producer's row, a reader's column), since its
cost counts every one of those slices too: with the score alone, a residual stream's channels
(read and written by many layers) look as cheap to lose as a block's inner ones while saving
several times the time, and the allocation empties the residual streams first (top-1 0.69
after fine-tuning, against 0.86). And no group loses more than :data:`DEFAULT_MAX_GROUP_SPARSITY`
of its channels unless ``max_layer_sparsity`` says otherwise (0.91 against 0.86): an allocation
free to take a group down to one channel makes that group the model's bottleneck.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.budget.allocation import Allocation, allocate_widths
from framework.pruning.budget.latency_table import LatencyTable, named_groups
from framework.pruning.budget.remeasure import MeasuredAllocation, measured_allocation
from framework.pruning.engine import RankingView
from framework.pruning.global_scope import GlobalCoupledPruningEngine, kept_floor
from framework.pruning.graph.groups import IN, OUT, DependencyGraph
from framework.pruning.rules import RankingRule
from framework.pruning.schedules import EpochSchedule
from framework.pruning.scores.bn_fold import FoldPair
from framework.pruning.selection import SelectedParameter
from framework.pruning.spec import LATENCY_BUDGET, PrunerSpec

log = logging.getLogger(__name__)

# the most of its channels a group gives up when max_layer_sparsity is not set (see the docstring)
DEFAULT_MAX_GROUP_SPARSITY = 0.75


def group_sparsity_limit(spec: PrunerSpec) -> float:
    return DEFAULT_MAX_GROUP_SPARSITY if spec.max_layer_sparsity is None else float(spec.max_layer_sparsity)


def check_table(table: LatencyTable, graph: DependencyGraph, where: str) -> None:
    """The table describes this model: each of its groups is one of the graph's, at the same width."""
    named = named_groups(graph)
    for name, group in table.groups.items():
        if name not in named or len(named[name].prunable) != group.full:
            have = f"{len(named[name].prunable)} channels" if name in named else "no such group"
            raise PruningError(
                f"{where} describes another model: its group {name!r} has {group.full} channels, this model {have}; "
                "allowed: a table measured for this model (pruner.latency_table=null measures one)"
            )


def budget_spec(spec: PrunerSpec, table: LatencyTable, where: str = "the cost table") -> PrunerSpec:
    """``spec`` with ``final_sparsity`` the share of the dense cost to remove (from
    ``target_latency_ms`` when given); one line when the target is out of the table's reach."""
    dense = table.predict()
    floor = table.predict({n: kept_floor(g.full, group_sparsity_limit(spec)) for n, g in table.groups.items()})
    unit = table.unit
    if spec.target_latency_ms is not None:
        target = float(spec.target_latency_ms)
        if target < floor:
            raise PruningError(
                f"pruner.target_latency_ms={target:g} is below what the smallest allowed widths reach "
                f"({floor:.4g} {unit} measured, {dense:.4g} {unit} dense, no group below "
                f"{1 - group_sparsity_limit(spec):.0%} of its channels); allowed: >= {floor:.4g}"
            )
        if target >= dense:
            raise PruningError(
                f"pruner.target_latency_ms={target:g} is not below the dense model's {dense:.4g} {unit}; "
                f"allowed: a target in [{floor:.4g}, {dense:.4g})"
            )
        spec = dataclasses.replace(spec, final_sparsity=1.0 - target / dense)
    if (1.0 - spec.final_sparsity) * dense < floor - 1e-9:
        most = 1.0 - floor / dense
        raise PruningError(
            f"pruner.final_sparsity={spec.final_sparsity:g} with pruner.budget={spec.budget} asks for "
            f"{(1 - spec.final_sparsity) * dense:.4g} {unit}, below what the smallest allowed widths reach "
            f"({floor:.4g} {unit}); allowed: final_sparsity <= {most:.3f}"
        )
    if spec.initial_sparsity > spec.final_sparsity:
        raise PruningError(
            f"pruner.initial_sparsity={spec.initial_sparsity} is above the budget's final share "
            f"{spec.final_sparsity:.3f}; allowed: initial_sparsity <= {spec.final_sparsity:.3f}"
        )
    return spec


class _Shifted:
    """A cost table seen in the engine's coordinates: a group's width there counts its selected
    channels; the table counts every prunable one (unselected channels are always kept)."""

    def __init__(self, table: LatencyTable, offsets: Mapping[str, int]):
        self.table = table
        self.offsets = offsets

    def widths(self, widths: Mapping[str, int] | None) -> dict[str, int]:
        """``widths`` in the table's coordinates."""
        return {name: width + self.offsets.get(name, 0) for name, width in (widths or {}).items()}

    def predict(self, widths: Mapping[str, int] | None = None) -> float:
        return self.table.predict(self.widths(widths))

    def change(self, widths: Mapping[str, int], name: str, to: int) -> float:
        return self.table.change(self.widths(widths), name, to + self.offsets.get(name, 0))

    def neighbours(self, name: str) -> set[str]:
        return self.table.neighbours(name)


class BudgetPruningEngine(GlobalCoupledPruningEngine):
    """Coupled channels removed by a width allocation under a MAC or latency budget. ``spec`` is
    the one :func:`budget_spec` returned (its ``final_sparsity`` a share of ``cost_table``'s cost)."""

    def __init__(
        self,
        model: nn.Module,
        spec: PrunerSpec,
        graph: DependencyGraph,
        selected: list[SelectedParameter],
        rule: RankingRule,
        schedule: EpochSchedule,
        finals: Mapping[str, float] | None,
        ranking_view: RankingView | None = None,
        fold_pairs: Iterable[FoldPair] = (),
        *,
        cost_table: LatencyTable,
        cost_measure: Callable[[Mapping[str, int]], float] | None = None,
    ):
        super().__init__(model, spec, graph, selected, rule, schedule, finals, ranking_view, fold_pairs)
        self.max_layer_sparsity = group_sparsity_limit(spec)
        self.cost_table = cost_table
        self.budget = spec.budget
        names = {id(group.channels[0]): name for name, group in named_groups(graph).items()}
        groups = {id(group.channels[0]): group for group in graph.groups if group.channels}
        # plan -> (table group name, prunable channels the plan does not hold)
        self._plan_groups: list[tuple[str | None, int]] = []
        for plan in self.plans:
            key = next((k for k, g in groups.items() if plan.channels[0] in g.channels), None)
            name = names.get(key) if key is not None else None
            if name is not None and name not in cost_table.groups:
                name = None  # a group no timed layer touches: it costs nothing to keep
            unselected = len(groups[key].prunable) - len(plan.channels) if key is not None else 0
            self._plan_groups.append((name, unselected))
        # per plan, per channel: the Conv/Linear slices (rows and columns) removing it removes
        self._slices = {
            id(plan): [sum(1 for m in c.members if m.role in (IN, OUT)) for c in plan.channels] for plan in self.plans
        }
        self.dense_cost = cost_table.predict()
        self.predicted_cost: float | None = None
        self.last_allocation: Allocation | None = None
        # budget=latency measured here: each allocation's widths timed whole and the prediction
        # corrected before they are accepted (.remeasure); the correction carries to the next one
        self.cost_measure = cost_measure if spec.budget == LATENCY_BUDGET else None
        self.last_measured: MeasuredAllocation | None = None
        self._next_scale = 1.0

    def budget_at(self, epoch: int, fractional: float | None = None) -> float:
        """The cost allowed at this pruning moment, in the table's unit."""
        removed = self.target_sparsity(epoch, fractional=fractional) or 0.0
        return (1.0 - removed) * self.dense_cost

    def _steps(self, name: str, offset: int) -> list[int]:
        group = self.cost_table.groups[name]
        widths = self.cost_table.latency_steps(name) if self.budget == LATENCY_BUDGET else range(1, group.full + 1)
        return [w - offset for w in widths if w - offset >= 1]

    @torch.no_grad()
    def update_masks(self, epoch: int, fractional: float | None = None) -> None:
        self.prepare_ranking(epoch, fractional)
        scored = self.channel_scores()
        importance, start, floors, steps, offsets = {}, {}, {}, {}, {}
        order: dict[str, list[int]] = {}
        for plan, (name, offset), (scores, alive) in zip(self.plans, self._plan_groups, scored):
            if name is None:
                continue
            alive_positions = [i for i in range(len(scores)) if bool(alive[i])]
            alive_positions.sort(key=lambda i: -float(scores[i]))
            order[name] = alive_positions
            importance[name] = [float(scores[i]) * self._slices[id(plan)][i] for i in alive_positions]
            start[name] = len(alive_positions)
            floors[name] = min(start[name], kept_floor(len(scores), self.max_layer_sparsity))
            steps[name] = self._steps(name, offset)
            offsets[name] = offset
        shifted = _Shifted(self.cost_table, offsets)
        budget = self.budget_at(epoch, fractional)

        def solve(limit: float) -> Allocation:
            return allocate_widths(importance, shifted, limit, steps, start, floors)

        if self.cost_measure is None:
            allocation = solve(budget)
            self.predicted_cost = allocation.cost
        else:
            measure = self.cost_measure

            def measure_shifted(widths: Mapping[str, int]) -> float:
                return measure({**{n: g.full for n, g in self.cost_table.groups.items()}, **shifted.widths(widths)})

            checked = measured_allocation(solve, measure_shifted, budget, self._next_scale)
            log.info("latency allocation for %.4g ms (epoch %d): %s", budget, epoch, checked.describe())
            self.last_measured, self._next_scale = checked, checked.scale
            allocation = checked.allocation
            self.predicted_cost = checked.last.predicted_ms
        self.last_allocation = allocation
        removed: list = []
        for plan, (name, _), (scores, alive) in zip(self.plans, self._plan_groups, scored):
            if name is None:
                keep = alive.clone()
            else:
                keep = torch.zeros(len(plan.channels), dtype=torch.bool)
                keep[order[name][: allocation.widths[name]]] = True
            keep = self._keep_one_per_layer(plan, keep, scores)
            removed.extend(channel for channel, kept in zip(plan.channels, keep.tolist()) if not kept)
        self._apply_removed(removed)

    def cost_metrics(self, epoch: int) -> dict[str, float]:
        """``budget/predicted_<unit>`` (the table's prediction for the current widths, kept from the
        last allocation) and ``budget/target_<unit>`` (what the schedule allows at ``epoch``)."""
        unit = self.cost_table.unit.lower()
        metrics = {f"budget/target_{unit}": self.budget_at(epoch), f"budget/dense_{unit}": self.dense_cost}
        if self.predicted_cost is not None:
            metrics[f"budget/predicted_{unit}"] = self.predicted_cost
        if self.last_measured is not None:  # the measured correction's rounds (the same predicted_ms)
            metrics.update(self.last_measured.metrics("budget"))
        return metrics

    def latency_correction(self) -> float:
        """The factor the kept widths' prediction used: the thinned model is predicted with it."""
        return self.last_measured.last.scale if self.last_measured is not None else 1.0

    def state_dict(self) -> dict:
        return {**super().state_dict(), "budget": self.budget}
