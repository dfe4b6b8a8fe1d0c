"""The Pareto front of a set of points: those that no other point beats on every objective."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """Indices of the non-dominated points, in input order.

    A point is dominated when another is at least as good on every objective and strictly better
    on one; ``maximize[k]`` says which way objective ``k`` is better. Equal points are all kept.
    """
    signs = [1.0 if up else -1.0 for up in maximize]
    oriented = [[s * v for s, v in zip(signs, point)] for point in points]

    def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [i for i, p in enumerate(oriented) if not any(dominates(q, p) for q in oriented)]
