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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

CostFunction = Callable[[Mapping[str, int]], float]


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
    cost: CostFunction,
    budget: float,
    steps: Mapping[str, Sequence[int]],
    start: Mapping[str, int] | None = None,
    floors: Mapping[str, int] | None = None,
) -> Allocation:
    """Widths (group -> kept channels) whose ``cost`` is at most ``budget`` (see the module
    docstring). ``importance[g]``: one score per channel of group ``g`` that may still be kept
    (higher: more important; the kept ones are the highest); ``steps[g]``: the widths ``g`` may
    take; ``start``: current widths (default: all of ``importance[g]``), never increased;
    ``floors[g]``: the narrowest width allowed (default 1)."""
    sums = _prefix_sums(importance)
    floors = dict(floors or {})
    current = {name: (start or {}).get(name, len(scores)) for name, scores in importance.items()}
    allowed = {
        name: sorted({w for w in steps.get(name, ()) if floors.get(name, 1) <= w <= current[name]} | {current[name]})
        for name in importance
    }
    value = cost(current)
    trail: list[tuple[str, int, int]] = []
    while value > budget:
        best = _best_step(current, allowed, sums, cost, value, down=True)
        if best is None:
            break
        name, width, value = best
        trail.append((name, current[name], width))
        current[name] = width
    feasible = value <= budget
    if feasible:
        while True:
            best = _best_step(current, allowed, sums, cost, value, down=False, budget=budget)
            if best is None:
                break
            name, width, value = best
            trail.append((name, current[name], width))
            current[name] = width
    return Allocation(current, value, sum(sums[n][w] for n, w in current.items()), feasible, trail)


def _best_step(current, allowed, sums, cost, value, down: bool, budget: float = math.inf):
    """The one-step move with the best importance per unit of cost: down, the least importance
    lost per unit saved; up, the most importance gained per unit spent within ``budget``."""
    best = None
    best_ratio = math.inf if down else -math.inf
    for name, width in current.items():
        widths = allowed[name]
        position = widths.index(width)
        if down and position == 0 or not down and position == len(widths) - 1:
            continue
        to = widths[position - 1] if down else widths[position + 1]
        moved = cost({**current, name: to})
        importance = abs(sums[name][width] - sums[name][to])
        if down:
            saved = value - moved
            if saved <= 0:
                continue
            ratio = importance / saved
            better = ratio < best_ratio
        else:
            spent = moved - value
            if moved > budget:
                continue
            ratio = importance / spent if spent > 0 else math.inf
            better = ratio > best_ratio
        if better:
            best, best_ratio = (name, to, moved), ratio
    return best
