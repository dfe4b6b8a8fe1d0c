"""Mask rules: turn a weight (or its ranking view) and a target into a keep-mask, one layer at a time.

The engine (:mod:`.engine`, "the pruner") asks its method's rule for every selected layer.

``level`` / ``agp`` (:class:`RankingRule`)
    Cut the weight into groups (:mod:`.structures`), score them (:mod:`.scores.criteria`) and prune
    exactly ``round(t * n)`` of the ``n`` groups (halves rounded up) with the lowest scores; for
    ``filter``/``channel`` at most ``n - 1`` (one always survives, with a warning).
    Groups the current mask already removed are ranked lowest, so they count towards the target
    instead of pushing sparsity past it (this matters for ``random`` and for ranking views such as
    BN folding, where a pruned weight need not have the smallest score). Ties are broken by group
    index (lower index pruned first), so results are deterministic. Selection needs no full
    sort: large layers bracket the k-th smallest score from a strided sample and rank only the
    scores inside the bracket (falling back to a full ``torch.kthvalue`` if the bracket misses),
    and the keep-mask is built from that threshold directly.
``magnitude`` (:class:`MagnitudeRule`, fine only)
    Zero every weight with ``|w| < threshold``.
``std_threshold`` (:class:`StdThresholdRule`, fine only)
    Han et al. (2015): per layer, zero ``|w| < std_multiplier * std(W)``. The standard deviation
    is the population one (no Bessel correction) so that a 1-element tensor gives 0, not NaN.

Every rule returns a full new keep-mask; the :class:`~.masks.MaskStore` ANDs it with the old one.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.scores.criteria import (
    Criterion,
    L1Criterion,
    L2Criterion,
    RandomCriterion,
    ScoreFunction,
    build_criterion,
)
from framework.pruning.scores.data_criteria import build_data_criterion
from framework.pruning.scores.score_check import checked_scores
from framework.pruning.spec import (
    DATA_CRITERIA,
    FINE,
    MAGNITUDE,
    RANKING_METHODS,
    STD_THRESHOLD,
    THRESHOLD_METHODS,
    method_problem,
    method_structure_problem,
    raise_first,
    threshold_problem,
)
from framework.pruning.structures import check_structure, expand_group_mask, to_groups

# Built-in criteria return new score tensors, so the rule may overwrite them in place.
_FRESH_SCORE_CRITERIA = (L1Criterion, L2Criterion, RandomCriterion)


def round_half_up(value: float) -> int:
    """Nearest integer, halves up (Python's round() sends halves to the even neighbour)."""
    return int(math.floor(value + 0.5))


# Layers with at least BRACKET_MIN scores locate the k-th value from a strided sample of at most
# SAMPLE_SIZE values (every SAMPLE_STRIDE_MIN-th value or sparser) first (see _bracket); smaller
# ones call torch.kthvalue directly.
SAMPLE_SIZE = 65536
SAMPLE_STRIDE_MIN = 16
BRACKET_MIN = 4096


def _count(mask: torch.Tensor) -> int:
    return int(torch.count_nonzero(mask))


def _bracket(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Two values ``lo <= hi`` of a strided sample of ``scores`` (no RNG involved) that very
    probably enclose the ``k``-th smallest score, or None when the layer is too small for it."""
    n = scores.numel()
    if n < BRACKET_MIN:
        return None
    # kthvalue costs ~2m on the sample (two calls) and ~(16 sigma) n = 8n/sqrt(m) on the band:
    # m ~ (2n)^(2/3) balances the two.
    target_m = min(SAMPLE_SIZE, int((2.0 * n) ** (2.0 / 3.0)))
    sample = scores[:: max(n // target_m, SAMPLE_STRIDE_MIN)]
    m = sample.numel()
    quantile = k / n
    # Eight binomial standard deviations around the quantile: a miss is practically impossible
    # for continuous scores, and the band still holds a small fraction of the values.
    margin = 8.0 * math.sqrt(quantile * (1.0 - quantile) / m) + 2.0 / m
    lo_index = math.floor((quantile - margin) * m)
    hi_index = math.ceil((quantile + margin) * m)
    if lo_index < 1 or hi_index > m:
        return None
    lo = torch.kthvalue(sample, lo_index).values
    hi = torch.kthvalue(sample, hi_index).values
    return lo, hi


def _split_at_bracket(scores: torch.Tensor, k: int):
    """``(above, band_index, rank)`` when the bracket of :func:`_bracket` holds the ``k``-th
    smallest score: ``above`` marks the scores above the bracket (a fresh bool tensor),
    ``band_index`` (ascending) the scores inside it, and the ``k``-th smallest score is the
    ``rank``-th smallest (1-based) of ``scores[band_index]``. None when the bracket misses."""
    bracket = _bracket(scores, k)
    if bracket is None:
        return None
    lo, hi = bracket
    above = torch.gt(scores, hi)
    n_above = _count(above)
    band = torch.ge(scores, lo)
    band.logical_xor_(above)  # lo <= score <= hi (above is a subset of scores >= lo)
    band_index = band.nonzero().squeeze(1)
    rank = k - (scores.numel() - n_above - band_index.numel())  # minus the scores below lo
    if 0 < rank <= band_index.numel():
        return above, band_index, rank
    return None


def _lowest_k_small(scores: torch.Tensor, k: int, kth: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`lowest_k` by one kthvalue (``kth``, when given, must be the ``k``-th smallest)."""
    if kth is None:
        kth = torch.kthvalue(scores, k).values
    up_to_kth = scores <= kth
    if _count(up_to_kth) == k:  # the usual case: no tie straddles the cut
        return up_to_kth
    below = scores < kth
    still_needed = k - _count(below)
    ties = up_to_kth ^ below
    # cumsum over the tie flags numbers the tied entries 1, 2, ... in index order.
    return below | (ties & (ties.cumsum(0) <= still_needed))


def keep_all_but_lowest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool vector, False on the ``k`` smallest scores (equal scores taken in index order) and
    True elsewhere: ``~lowest_k(scores, k)``, built directly as a fresh tensor."""
    n = scores.numel()
    if k <= 0:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    split = _split_at_bracket(scores, k)
    if split is None:
        kth = torch.kthvalue(scores, k).values
        keep = scores > kth
        if n - _count(keep) == k:  # the usual case: no tie straddles the cut
            return keep
        return _lowest_k_small(scores, k, kth).logical_not_()
    # Everything below the band is pruned, everything above kept (``above`` becomes the mask);
    # inside the band, the ``rank`` lowest values are pruned with ties in index order, since
    # band_index is ascending and every score equal to the k-th smallest lies in the band.
    keep, band_index, rank = split
    band_lowest = _lowest_k_small(scores[band_index], rank)
    keep[band_index[band_lowest.logical_not_()]] = True
    return keep


def lowest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool vector marking the ``k`` smallest scores; equal scores are taken in index order."""
    return keep_all_but_lowest_k(scores, k).logical_not_()


class MaskRule:
    """Computes a keep-mask (True = keep) of the weight's shape."""

    structure = FINE
    criterion: Criterion | None = None  # what a ranking rule scores groups with (threshold rules: none)

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


class RankingRule(MaskRule):
    """Prune the ``round(target * n_groups)`` lowest-scored groups."""

    criterion: Criterion

    def __init__(self, structure: str, criterion: Criterion):
        check_structure(structure)
        self.structure = structure
        self.criterion = criterion

    def kept_groups(
        self,
        view: torch.Tensor,
        layer: nn.Module | None,
        target: float,
        current: torch.Tensor | None,
    ) -> torch.Tensor:
        """Bool ``[n_groups]``: True for groups to keep (a fresh tensor)."""
        groups = to_groups(view.detach(), self.structure, layer)
        scores = checked_scores(self.criterion, groups)
        fresh = type(self.criterion) in _FRESH_SCORE_CRITERIA  # scores share no memory with the view
        if scores.dtype not in (torch.float32, torch.float64):
            scores = scores.float()  # half precision would create ties and is slow to select on
            fresh = True
        k = round_half_up(target * scores.numel())
        if self.structure != FINE and k >= scores.numel():
            # a layer without filters (or input channels) cuts the network: one always survives
            warnings.warn(
                f"target sparsity {target:g} asks to remove all {scores.numel()} {self.structure}s of a "
                f"{type(layer).__name__}; one is kept",
                stacklevel=3,
            )
            k = scores.numel() - 1
        if current is None:
            return keep_all_but_lowest_k(scores, k)
        if self.structure == FINE:  # one element per group: no reduction needed
            alive = current.reshape(-1).to(scores.device)
        else:
            alive = to_groups(current, self.structure, layer).any(dim=1).to(scores.device)
        if k <= alive.numel() - _count(alive):
            # The target is already met: masks never regrow, so nothing changes.
            return alive.clone()
        # Already pruned groups rank lowest so they count towards the target (torch.where is
        # cheaper than masked_fill_ on CPU; written in place when the scores are our own).
        if fresh:
            floor = torch.full((), -math.inf, dtype=scores.dtype, device=scores.device)
            ranked = torch.where(alive, scores, floor, out=scores)
        else:
            ranked = torch.where(alive, scores, -math.inf)
        return keep_all_but_lowest_k(ranked, k)

    def keep_mask(self, view, layer, target, current):
        keep = self.kept_groups(view, layer, float(target), current)
        return expand_group_mask(keep, self.structure, layer, view.shape)

    def state_dict(self):
        return self.criterion.state_dict()

    def load_state_dict(self, state):
        self.criterion.load_state_dict(state)


class MagnitudeRule(MaskRule):
    """Zero every weight whose magnitude is below a fixed threshold."""

    def __init__(self, threshold: float):
        self.threshold = float(threshold)

    def keep_mask(self, view, layer, target, current):
        return view.detach().abs() >= self.threshold


class StdThresholdRule(MaskRule):
    """Zero ``|w| < std_multiplier * std(W)`` per layer (Han et al., 2015)."""

    def __init__(self, std_multiplier: float):
        self.std_multiplier = float(std_multiplier)

    def keep_mask(self, view, layer, target, current):
        view = view.detach().float()
        threshold = self.std_multiplier * view.std(correction=0)
        return view.abs() >= threshold


def build_mask_rule(
    method: str,
    structure: str = FINE,
    criterion: str | ScoreFunction = "l1",
    threshold: float | None = None,
    std_multiplier: float | None = None,
    seed: int = 0,
) -> MaskRule:
    """The mask rule of ``method`` (one of ``level``, ``agp``, ``magnitude``, ``std_threshold``)."""
    check_structure(structure)
    raise_first(
        [
            method_problem(method),
            method_structure_problem(method, structure),
            threshold_problem(method, threshold, std_multiplier),
        ]
    )
    if method in RANKING_METHODS:
        if isinstance(criterion, str) and criterion in DATA_CRITERIA:
            return RankingRule(structure, build_data_criterion(criterion))
        return RankingRule(structure, build_criterion(criterion, seed))
    if method == MAGNITUDE and threshold is not None:
        return MagnitudeRule(threshold)
    if method == STD_THRESHOLD and std_multiplier is not None:
        return StdThresholdRule(std_multiplier)
    raise PruningError(
        f"pruner.method={method} prunes nothing and has no mask rule; allowed: {', '.join(RANKING_METHODS + THRESHOLD_METHODS)}"
    )
