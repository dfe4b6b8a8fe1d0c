"""``scope="global"``: one ranking across every selected layer instead of a target per layer.

With ``scope="layer"`` (the default) each layer (or dependency group) loses its own fraction of
groups. With ``scope="global"`` all groups of all selected layers compete in one ranking, and the
lowest-scored ones are removed until the pruned set reaches the schedule's target *as a share of
its weights* (``sparsity/total``): the layers that matter least give up most.

Normalisation
    Raw criterion scores of different layers are not comparable (a layer with 9·64 weights per
    filter and one with 64 have different typical magnitudes, and weight decay and BatchNorm
    rescale layers freely). Each layer's scores are therefore divided by the mean score of that
    layer's *alive* groups before the ranking: a group's score is "how important it is relative to
    the average group of its layer". For coupled channels, every member's score is normalised by
    the mean over its own layer's alive channels, then the members are reduced with
    ``group_reduction`` as in per-layer scope. The ranking view is what the criterion sees, so
    ``fold_batchnorm=true`` ranks the BatchNorm-folded weights globally (and ``activation`` the
    BN-aware view of :mod:`.scores.bn_activation`).
Floors
    No layer is emptied: each layer (for coupled pruning: each dependency group) keeps at least
    ``max(1, n - floor(max_layer_sparsity · n))`` of its ``n`` groups (``max_layer_sparsity=None``:
    one). The kept floor is the layer's best-scored groups; the rest compete in the global ranking.
The cut
    Groups pruned earlier rank lowest (masks never regrow). The candidates are sorted by
    normalised score (ties: layer order, then group index) and the shortest prefix whose removal
    brings the pruned set's zero count nearest to ``round(target · weights)`` is removed (the larger
    one on a tie). So every removed group scores at most every kept candidate: one threshold
    across layers. Fine-grained targets are met exactly; filter/channel ones to within one group.
    When the floors leave too few candidates, everything but the floors is removed, with a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from framework.pruning.coupled import CoupledPruningEngine, reduce_member_scores
from framework.pruning.engine import PruningEngine, RankingView
from framework.pruning.graph.groups import DependencyGraph
from framework.pruning.rules import RankingRule
from framework.pruning.schedules import EpochSchedule
from framework.pruning.scores.bn_fold import FoldPair
from framework.pruning.scores.score_check import checked_scores
from framework.pruning.selection import SelectedParameter
from framework.pruning.spec import GLOBAL, PrunerSpec
from framework.pruning.structures import expand_group_mask, to_groups


def _max_layer_sparsity(spec: PrunerSpec) -> float | None:
    return None if spec.max_layer_sparsity is None else float(spec.max_layer_sparsity)


def kept_floor(n: int, max_layer_sparsity: float | None) -> int:
    """How many of a layer's ``n`` groups always survive."""
    if max_layer_sparsity is None:
        return min(1, n)
    return min(n, max(1, n - math.floor(max_layer_sparsity * n + 1e-9)))


def normalise(scores: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """``scores`` divided by the mean score of the alive groups (unchanged when that mean is 0)."""
    scores = scores.double()
    mean = scores[alive].mean() if bool(alive.any()) else torch.zeros((), dtype=torch.float64)
    return scores / mean if float(mean) > 0 else scores.clone()


@dataclass
class Candidate:
    """Groups that may be removed, one row per group, from one layer (or one dependency group)."""

    owner: int  # index of the layer / plan
    indices: torch.Tensor  # group indices inside the owner
    scores: torch.Tensor  # normalised, -inf for groups already pruned


def _order(candidates: list[Candidate]) -> list[tuple[int, int]]:
    """(owner, index) of every candidate group, lowest normalised score first (ties: owner, index)."""
    if not candidates:
        return []
    scores = torch.cat([c.scores for c in candidates])
    owners = torch.cat([torch.full_like(c.indices, c.owner) for c in candidates])
    indices = torch.cat([c.indices for c in candidates])
    # stable sorts: by index, then owner, then score
    order = torch.argsort(indices, stable=True)
    order = order[torch.argsort(owners[order], stable=True)]
    order = order[torch.argsort(scores[order], stable=True)]
    return list(zip(owners[order].tolist(), indices[order].tolist()))


def _best_prefix(zeros_after, count: int, needed: int) -> int:
    """The prefix length in ``[0, count]`` whose zero count is nearest ``needed`` (larger on a tie);
    ``zeros_after(c)`` is non-decreasing in ``c``, so a bisection finds the crossing."""
    lo, hi = 0, count
    if zeros_after(count) < needed:
        return count
    while lo < hi:  # smallest c with zeros_after(c) >= needed
        mid = (lo + hi) // 2
        if zeros_after(mid) >= needed:
            hi = mid
        else:
            lo = mid + 1
    if lo > 0 and needed - zeros_after(lo - 1) < zeros_after(lo) - needed:
        return lo - 1
    return lo


def _split_floor(owner: int, scores: torch.Tensor, alive: torch.Tensor, floor: int) -> Candidate:
    """The owner's groups minus its ``floor`` best alive ones, as a :class:`Candidate`."""
    ranked = torch.where(alive, scores, torch.full_like(scores, -math.inf))
    protected = torch.zeros_like(alive)
    if floor > 0:
        # highest scores kept; among equal scores the higher index is kept (lower ones go first)
        backwards = torch.arange(scores.numel() - 1, -1, -1)
        order = backwards[torch.argsort(-ranked[backwards], stable=True)]
        protected[order[:floor]] = True
    free = (~protected).nonzero().squeeze(1)
    return Candidate(owner, free, ranked[free])


class GlobalPruningEngine(PruningEngine):
    """Per-layer masks (``coupling="layer"`` or ``structure="fine"``) cut by one global ranking."""

    scope = GLOBAL
    rule: RankingRule

    def __init__(
        self,
        model: nn.Module,
        spec: PrunerSpec,
        selected: list[SelectedParameter],
        rule: RankingRule,
        schedule: EpochSchedule,
        finals: Mapping[str, float] | None,
        ranking_view: RankingView | None = None,
        fold_pairs: Iterable[FoldPair] = (),
    ):
        super().__init__(model, spec, selected, rule, schedule, finals, ranking_view, fold_pairs)
        self.max_layer_sparsity = _max_layer_sparsity(spec)
        self.last_threshold: float | None = None  # the normalised score of the last removed group

    def normalised_scores(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(normalised scores, alive flags)`` of every selected layer's groups."""
        result = []
        for selected in self.selected:
            view = self.ranking_view(selected.name, selected.param)
            scores = (
                checked_scores(self.rule.criterion, to_groups(view.detach(), self.structure, selected.layer))
                .detach()
                .cpu()
            )
            current = self.store.get(selected.name)
            if current is None:
                alive = torch.ones(scores.numel(), dtype=torch.bool)
            else:
                alive = to_groups(current, self.structure, selected.layer).any(dim=1).cpu()
            result.append((normalise(scores, alive), alive))
        return result

    @torch.no_grad()
    def update_masks(self, epoch: int, fractional: float | None = None) -> None:
        self.prepare_ranking(epoch, fractional)
        target = self.scheduled_sparsity(epoch, fractional)
        layers = self.normalised_scores()
        sizes = [p.param.numel() // scores.numel() for p, (scores, _) in zip(self.selected, layers)]
        candidates = [
            _split_floor(i, scores, alive, kept_floor(scores.numel(), self.max_layer_sparsity))
            for i, (scores, alive) in enumerate(layers)
        ]
        order = _order(candidates)
        # zeros after removing the first c candidates: each group is disjoint from the others
        group_sizes = torch.tensor([sizes[owner] for owner, _ in order], dtype=torch.int64)
        cumulative = torch.cat([torch.zeros(1, dtype=torch.int64), group_sizes.cumsum(0)]).tolist()
        total = sum(p.param.numel() for p in self.selected)
        needed = round(target * total)
        count = _best_prefix(lambda c: cumulative[c], len(order), needed)
        if count == len(order) and cumulative[-1] < needed:
            warnings.warn(
                f"global target sparsity {target:g} is above what the floors allow "
                f"(max_layer_sparsity={self.max_layer_sparsity}); pruning every group but the floors",
                stacklevel=2,
            )
        removed: list[list[int]] = [[] for _ in self.selected]
        for owner, index in order[:count]:
            removed[owner].append(index)
        self.last_threshold = (
            float(torch.cat([c.scores for c in candidates]).sort().values[count - 1]) if count else None
        )
        for selected, (scores, _), indices in zip(self.selected, layers, removed):
            keep = torch.ones(scores.numel(), dtype=torch.bool)
            keep[indices] = False
            mask = expand_group_mask(keep, self.structure, selected.layer, selected.param.shape)
            self.store.update(selected.name, mask.to(selected.param.device), owned=True)
            self.store.zero_masked(selected.name)


class GlobalCoupledPruningEngine(CoupledPruningEngine):
    """Coupled channels of every dependency group ranked together (see the module docstring)."""

    scope = GLOBAL

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
    ):
        super().__init__(model, spec, graph, selected, rule, schedule, finals, ranking_view, fold_pairs)
        self.max_layer_sparsity = _max_layer_sparsity(spec)
        self.last_threshold: float | None = None

    def _normalised_member_scores(self, cache: dict) -> dict:
        """``(module, role) -> normalised per-channel scores`` of every scoring member's layer."""
        normalised: dict = {}
        for plan in self.plans:
            for channel in plan.channels:
                for member in self._scoring_members(channel):
                    key = (member.module, member.role)
                    if key in normalised:
                        continue
                    scores = torch.tensor(self.channel_scores_of(member.module, member.role, cache))
                    flags = self.alive_flags_of(member.module, member.role, cache)
                    alive = torch.ones(scores.numel(), dtype=torch.bool) if flags is None else torch.tensor(flags)
                    normalised[key] = normalise(scores, alive)
        return normalised

    def channel_scores(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(normalised scores, alive flags)`` of every plan's prunable channels."""
        cache: dict = {}
        normalised = self._normalised_member_scores(cache)
        result = []
        for plan in self.plans:
            scores = []
            for channel in plan.channels:
                members = self._scoring_members(channel)
                per_member = [float(normalised[(m.module, m.role)][list(m.indices)].mean()) for m in members]
                scores.append(reduce_member_scores(per_member, self.group_reduction))
            alive = torch.tensor([self.is_alive(c, cache) for c in plan.channels], dtype=torch.bool)
            result.append((torch.tensor(scores, dtype=torch.float64), alive))
        return result

    def _zeros_in_selection(self, masks: dict[str, torch.Tensor]) -> int:
        zeros = 0
        for selected in self.selected:
            mask = masks.get(selected.name)
            current = self.store.get(selected.name)
            if mask is not None and current is not None:
                keep = mask & current.cpu()
            elif mask is not None:
                keep = mask
            elif current is not None:
                keep = current
            else:
                continue
            zeros += keep.numel() - int(keep.count_nonzero())
        return zeros

    @torch.no_grad()
    def update_masks(self, epoch: int, fractional: float | None = None) -> None:
        self.prepare_ranking(epoch, fractional)
        target = self.scheduled_sparsity(epoch, fractional)
        plans = self.channel_scores()
        candidates = [
            _split_floor(i, scores, alive, kept_floor(scores.numel(), self.max_layer_sparsity))
            for i, (scores, alive) in enumerate(plans)
        ]
        order = _order(candidates)
        channels = [self.plans[owner].channels[index] for owner, index in order]
        total = sum(p.param.numel() for p in self.selected)
        needed = round(target * total)
        # a coupled channel removes a producer's rows and a consumer's columns, which overlap
        # with other channels' rows: the zero count is measured on the masks, not added up
        count = _best_prefix(
            lambda c: self._zeros_in_selection(self._masks_for_removed(channels[:c])), len(channels), needed
        )
        if count == len(channels) and self._zeros_in_selection(self._masks_for_removed(channels)) < needed:
            warnings.warn(
                f"global target sparsity {target:g} is above what the floors allow "
                f"(max_layer_sparsity={self.max_layer_sparsity}); pruning every channel but the floors",
                stacklevel=2,
            )
        chosen = channels[:count]
        scores = torch.cat([c.scores for c in candidates]) if candidates else torch.zeros(0)
        self.last_threshold = float(scores.sort().values[count - 1]) if count else None
        # a layer role shared by several groups (concatenations) keeps one channel, as per layer
        removed_set = {id(c) for c in chosen}
        final: list = []
        for plan, (plan_scores, _) in zip(self.plans, plans):
            keep = torch.tensor([id(c) not in removed_set for c in plan.channels], dtype=torch.bool)
            keep = self._keep_one_per_layer(plan, keep, plan_scores)
            final.extend(c for c, kept in zip(plan.channels, keep.tolist()) if not kept)
        self._apply_removed(final)
