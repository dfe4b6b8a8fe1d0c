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


def lowest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool vector marking the ``k`` smallest scores; equal scores are taken in index order."""
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    kth = torch.kthvalue(scores, k).values
    below = scores < kth
    ties = scores == kth
    still_needed = k - int(below.sum())
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
        scores = self.criterion(groups).float()
        if current is not None:
            already_pruned = ~to_groups(current, self.structure, layer).any(dim=1)
            scores = scores.masked_fill(already_pruned.to(scores.device), -math.inf)
        return lowest_k(scores, round_half_up(target * scores.numel()))

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
                f"pruner.structure={structure} is not supported by pruner.method={method}; allowed: fine"
            )
        if method == "magnitude":
            return MagnitudePruner(_non_negative("pruner.threshold", threshold))
        return SensitivityPruner(_non_negative("pruner.sensitivity", sensitivity))
    allowed = ", ".join(RANKING_METHODS + THRESHOLD_METHODS)
    raise PruningError(f"pruner.method={method!r} is not a known pruning method; choose one of {allowed}")
