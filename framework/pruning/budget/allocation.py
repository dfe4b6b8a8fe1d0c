"""Global allocation of widths under a budget: which group gives up how many channels.

Given each dependency group's channel importances, the widths each group may take (its latency
steps, :meth:`~.latency_table.LatencyTable.latency_steps`, or every width for a MAC budget) and a
cost function of all the widths (a latency table's prediction, or MACs), find widths whose cost
is within the budget while keeping as much importance as possible.

The solver is greedy by importance per unit of cost, in two passes:

1. *Remove*: from the current widths, repeatedly take the one step down (one group to its next
   narrower allowed width) that loses the least importance per millisecond saved, until the cost
   is within the budget.
2. *Refill*: the last step usually overshoots; while some group can go back up one step and stay
   within the budget, take the step that regains the most importance per millisecond spent.

Why greedy and not a knapsack: a knapsack needs each group's cost to be its own, but latency is
not additive over groups: a conv between two pruned groups shrinks along both its input and its
output, so what one group's step saves depends on the other's width. The greedy evaluates the
whole model's predicted cost after every step, so it sees those interactions; a group's kept
channels are its most important ones, so the importance lost per step rises as a group narrows
(concave), which is where a greedy by ratio is the fractional knapsack's optimum up to one step,
and the refill pass takes back what that last step overshot. Each step costs one prediction per
group: milliseconds for a resnet18, about a second for the largest models we tried.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class CostModel(Protocol):
    """What the allocation needs of a cost: a :class:`~.latency_table.LatencyTable` (latency or
    MACs) is one."""

    def predict(self, widths: Mapping[str, int] | None = None) -> float: ...

    def change(self, widths: Mapping[str, int], name: str, to: int) -> float: ...

    def neighbours(self, name: str) -> set[str]: ...


@dataclass
class Allocation:
    widths: dict[str, int]  # group -> kept channels
    cost: float  # predicted cost at ``widths``
    importance_kept: float
    feasible: bool  # False: even the narrowest allowed widths cost more than the budget
    steps: list[tuple[str, int, int]] = field(default_factory=list)  # (group, from, to), in order


def kept_importance(importance: Sequence[float], width: int) -> float:
    """Importance of the ``width`` most important channels."""
    return float(sum(sorted(importance, reverse=True)[:width]))


def _prefix_sums(importance: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Per group, the importance kept at each width (the most important channels first)."""
    sums = {}
    for name, scores in importance.items():
        ordered = sorted((float(s) for s in scores), reverse=True)
        running = [0.0]
        for score in ordered:
            running.append(running[-1] + score)
        sums[name] = running
    return sums


def allocate_widths(
    importance: Mapping[str, Sequence[float]],
    cost: CostModel,
    budget: float,
    steps: Mapping[str, Sequence[int]],
    start: Mapping[str, int] | None = None,
    floors: Mapping[str, int] | None = None,
) -> Allocation:
    """Widths (group -> kept channels) whose ``cost.predict`` is at most ``budget`` (see the
    module docstring). ``importance[g]``: one score per channel of group ``g`` that may still be
    kept (higher: more important; the kept ones are the highest); ``steps[g]``: the widths ``g``
    may take; ``start``: current widths (default: all of ``importance[g]``), never increased;
    ``floors[g]``: the narrowest width allowed (default 1)."""
    search = _Search(importance, cost, steps, start or {}, floors or {})
    while search.value > budget and search.take(down=True):
        pass
    search.value = cost.predict(search.current)  # the sum of changes, without its rounding drift
    feasible = search.value <= budget
    if feasible:
        search.reset_moves()
        while search.take(down=False, budget=budget):
            pass
        search.value = cost.predict(search.current)
    widths = search.current
    return Allocation(
        dict(widths), search.value, sum(search.sums[n][w] for n, w in widths.items()), feasible, search.trail
    )


class _Search:
    """The greedy's state: current widths and cost, and each group's best next move (recomputed
    only for the groups that share a layer with the one that moved)."""

    def __init__(self, importance, cost: CostModel, steps, start, floors):
        self.cost = cost
        self.sums = _prefix_sums(importance)
        self.current = {name: start.get(name, len(scores)) for name, scores in importance.items()}
        self.allowed = {
            name: sorted({w for w in steps.get(name, ()) if floors.get(name, 1) <= w <= width} | {width})
            for name, width in self.current.items()
        }
        self.value = cost.predict(self.current)
        self.trail: list[tuple[str, int, int]] = []
        self.moves: dict[tuple[str, bool], tuple[int, float] | None] = {}

    def reset_moves(self) -> None:
        self.moves.clear()

    def _move(self, name: str, down: bool) -> tuple[int, float] | None:
        """(width, cost change) of ``name``'s one step down or up, None at the end of its steps."""
        key = (name, down)
        if key not in self.moves:
            widths = self.allowed[name]
            position = widths.index(self.current[name])
            end = position == 0 if down else position == len(widths) - 1
            if end:
                self.moves[key] = None
            else:
                to = widths[position - 1] if down else widths[position + 1]
                self.moves[key] = (to, self.cost.change(self.current, name, to))
        return self.moves[key]

    def take(self, down: bool, budget: float = math.inf) -> bool:
        """Take the best one-step move: down, the least importance lost per unit saved; up, the
        most importance gained per unit spent within ``budget``. False when there is none."""
        best, best_ratio = None, math.inf if down else -math.inf
        for name in self.current:
            move = self._move(name, down)
            if move is None:
                continue
            to, delta = move
            importance = abs(self.sums[name][self.current[name]] - self.sums[name][to])
            if down:
                if delta >= 0:
                    continue  # saves nothing: never worth a channel
                ratio = importance / -delta
                better = ratio < best_ratio
            else:
                if self.value + delta > budget:
                    continue
                ratio = importance / delta if delta > 0 else math.inf
                better = ratio > best_ratio
            if better:
                best, best_ratio = (name, to, delta), ratio
        if best is None:
            return False
        name, to, delta = best
        self.trail.append((name, self.current[name], to))
        self.current[name] = to
        self.value += delta
        for neighbour in self.cost.neighbours(name) | {name}:
            self.moves.pop((neighbour, True), None)
            self.moves.pop((neighbour, False), None)
        return True
