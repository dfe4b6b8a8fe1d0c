"""Pruners: turn a weight (or its ranking view) and a target into a keep-mask.

``level`` / ``agp`` (:class:`RankingPruner`)
    Cut the weight into groups (:mod:`.structures`), score them (:mod:`.criteria`) and prune
    exactly ``round(t * n)`` of the ``n`` groups (halves rounded up) with the lowest scores.
    Groups the current mask already removed are ranked lowest, so they count towards the target
    instead of pushing sparsity past it (this matters for ``random`` and for ranking views such as
    BN folding, where a pruned weight need not have the smallest score). Ties are broken by group
    index (lower index pruned first), so results are deterministic. Selection is
    ``torch.kthvalue`` plus one pass over the scores: linear time, no full sort.
``magnitude`` (:class:`MagnitudePruner`, fine only)
    Zero every weight with ``|w| < threshold``.
``sensitivity`` (:class:`SensitivityPruner`, fine only)
    Han et al. (2015): per layer, zero ``|w| < s * std(W)``. The standard deviation is the
    population one (no Bessel correction) so that a 1-element tensor gives 0, not NaN.

Every pruner returns a full new keep-mask; the :class:`~.masks.MaskStore` ANDs it with the old one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.criteria import Criterion, build_criterion
from framework.pruning.structures import check_structure, expand_group_mask, to_groups

RANKING_METHODS = ("level", "agp")
THRESHOLD_METHODS = ("magnitude", "sensitivity")


def round_half_up(value: float) -> int:
    """Nearest integer, halves up (Python's round() sends halves to the even neighbour)."""
    return int(math.floor(value + 0.5))


# Layers with more scores than this locate the k-th value from a strided sample first (see
# kth_smallest); smaller ones call torch.kthvalue directly.
SAMPLE_SIZE = 65536


def _count(mask: torch.Tensor) -> int:
    return int(torch.count_nonzero(mask))


def kth_smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th smallest value (1-based) of the 1-D ``scores``; exact.

    ``torch.kthvalue`` over a multi-million-element layer costs about as much as ten elementwise
    passes, so large inputs first bracket the answer between two quantiles of a strided sample
    (no RNG involved), count what lies below the bracket and run kthvalue only on the few values
    inside it. If the bracket misses (skewed or heavily tied data) it falls back to the full
    kthvalue, so the result never depends on the sample.
    """
    n = scores.numel()
    if n <= 4 * SAMPLE_SIZE:
        return torch.kthvalue(scores, k).values
    sample = scores[:: n // SAMPLE_SIZE]
    m = sample.numel()
    quantile = k / n
    # Eight binomial standard deviations around the quantile: a miss is practically impossible
    # for continuous scores, and the band still holds well under 10% of the values.
    margin = 8.0 * math.sqrt(quantile * (1.0 - quantile) / m) + 2.0 / m
    lo_index = math.floor((quantile - margin) * m)
    hi_index = math.ceil((quantile + margin) * m)
    if lo_index >= 1 and hi_index <= m:
        lo = torch.kthvalue(sample, lo_index).values
        hi = torch.kthvalue(sample, hi_index).values
        below_lo = scores < lo
        up_to_hi = scores <= hi
        n_below = _count(below_lo)
        band = scores[up_to_hi ^ below_lo]  # lo <= score <= hi (below_lo is a subset of up_to_hi)
        if n_below < k <= n_below + band.numel():
            return torch.kthvalue(band, k - n_below).values
    return torch.kthvalue(scores, k).values


def lowest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool vector marking the ``k`` smallest scores; equal scores are taken in index order."""
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    kth = kth_smallest(scores, k)
    up_to_kth = scores <= kth
    if _count(up_to_kth) == k:  # the usual case: no tie straddles the cut
        return up_to_kth
    below = scores < kth
    still_needed = k - _count(below)
    ties = up_to_kth ^ below
    # cumsum over the tie flags numbers the tied entries 1, 2, ... in index order.
    return below | (ties & (ties.cumsum(0) <= still_needed))


class Pruner:
    """Computes a keep-mask (True = keep) of the weight's shape."""

    structure = "fine"

    def keep_mask(
        self,
        view: torch.Tensor,
        layer: nn.Module | None,
        target: float | None,
        current: torch.Tensor | None,
    ) -> torch.Tensor:
        """``view``: the ranking view of the weight; ``current``: the existing mask or None."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class RankingPruner(Pruner):
    """Prune the ``round(target * n_groups)`` lowest-scored groups."""

    def __init__(self, structure: str, criterion: Criterion):
        check_structure(structure)
        self.structure = structure
        self.criterion = criterion

    def pruned_groups(
        self,
        view: torch.Tensor,
        layer: nn.Module | None,
        target: float,
        current: torch.Tensor | None,
    ) -> torch.Tensor:
        """Bool ``[n_groups]``: True for groups to prune."""
        groups = to_groups(view.detach(), self.structure, layer)
        scores = self.criterion(groups)
        if scores.dtype not in (torch.float32, torch.float64):
            scores = scores.float()  # half precision would create ties and is slow to select on
        k = round_half_up(target * scores.numel())
        if current is None:
            return lowest_k(scores, k)
        if self.structure == "fine":  # one element per group: no reduction needed
            alive = current.reshape(-1).to(scores.device)
        else:
            alive = to_groups(current, self.structure, layer).any(dim=1).to(scores.device)
        if k <= alive.numel() - _count(alive):
            # The target is already met: masks never regrow, so nothing changes.
            return alive.logical_not()
        # Already pruned groups rank lowest so they count towards the target (torch.where is
        # cheaper than masked_fill_ on CPU).
        return lowest_k(torch.where(alive, scores, -math.inf), k)

    def keep_mask(self, view, layer, target, current):
        pruned = self.pruned_groups(view, layer, float(target), current)
        return expand_group_mask(~pruned, self.structure, layer, view.shape)

    def state_dict(self):
        return self.criterion.state_dict()

    def load_state_dict(self, state):
        self.criterion.load_state_dict(state)


class MagnitudePruner(Pruner):
    """Zero every weight whose magnitude is below a fixed threshold."""

    def __init__(self, threshold: float):
        self.threshold = float(threshold)

    def keep_mask(self, view, layer, target, current):
        return view.detach().abs() >= self.threshold


class SensitivityPruner(Pruner):
    """Zero ``|w| < sensitivity * std(W)`` per layer (Han et al., 2015)."""

    def __init__(self, sensitivity: float):
        self.sensitivity = float(sensitivity)

    def keep_mask(self, view, layer, target, current):
        view = view.detach().float()
        threshold = self.sensitivity * view.std(correction=0)
        return view.abs() >= threshold


def _non_negative(key: str, value) -> float:
    if value is None:
        raise PruningError(f"{key} is required by this pruning method; got None, expected a number >= 0")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise PruningError(f"{key}={value!r} must be a finite number >= 0")
    return float(value)


def build_mask_pruner(
    method: str,
    structure: str = "fine",
    criterion: str = "l1",
    threshold: float | None = None,
    sensitivity: float | None = None,
    seed: int = 0,
) -> Pruner:
    """The pruner for ``method`` (one of ``level``, ``agp``, ``magnitude``, ``sensitivity``)."""
    check_structure(structure)
    if method in RANKING_METHODS:
        return RankingPruner(structure, build_criterion(criterion, seed))
    if method in THRESHOLD_METHODS:
        if structure != "fine":
            raise PruningError(
                f"pruner.structure={structure} is not supported by pruner.name={method}; allowed: fine"
            )
        if method == "magnitude":
            return MagnitudePruner(_non_negative("pruner.threshold", threshold))
        return SensitivityPruner(_non_negative("pruner.sensitivity", sensitivity))
    allowed = ", ".join(RANKING_METHODS + THRESHOLD_METHODS)
    raise PruningError(f"pruner.name={method!r} is not a known pruning method; choose one of {allowed}")
