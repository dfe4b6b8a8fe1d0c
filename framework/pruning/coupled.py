"""Coupled structured pruning: rank and mask whole dependency groups (``coupling="coupled"``).

With ``structure=filter`` or ``structure=channel`` the unit of removal is a *coupled channel* of
:mod:`.graph.dependency`: one channel of every tensor it runs through, with every layer that touches it.
With ``structure=head`` it is an attention head (the groups of kind ``"head"``; filter/channel rank
the others): its q, k, v rows and output-projection columns, scored by the criterion on every
member (``param`` members on their slices) and reduced with ``group_reduction``.

Ranking
    Every member of a coupled channel is scored with the criterion (a callable on a
    ``[n_groups, group_size]`` matrix, :mod:`.scores.criteria`) on the ranking view (BatchNorm-folded with
    ``fold_batchnorm``): ``structure=filter`` scores the producers' filters (``out`` members: weight
    rows of the Conv/Linear layers that write the channel), ``structure=channel`` scores the
    consumers' input channels (``in`` members: weight columns of the layers that read it; a channel
    nobody reads falls back to its producers). A member that holds several columns of one layer
    (a Linear after ``flatten`` reads H·W columns per channel) scores the mean of its columns. The
    member scores are reduced with ``group_reduction``: ``mean`` (default: a channel written or read
    by many layers is not favoured just for having more members), ``sum`` or ``max``.
Targets
    A dependency group (the coupled channels that share a layer) loses ``round(t · n)`` of its ``n``
    prunable channels (halves rounded up), where ``t`` is the schedule's target for the lowest
    ``levels`` entry among the group's *ranked* layers: the producers for ``structure=filter`` (a
    layer's level is the share of its filters that go), the consumers for ``structure=channel``
    (the share of its input channels); so a per-group level can be written as a per-layer level,
    which the sensitivity analysis relies on. At least
    one channel of every group and of every layer survives; a target that asks for more is capped
    with a warning. ``round_to=r`` keeps the group's kept count a multiple of ``r`` (rounding the
    kept count up, never above ``n``). Channels pruned earlier rank lowest (masks never regrow).
Masks
    The masks of a coupled channel are identical by construction and cover every member: the
    producers' weight rows **and biases**, the BatchNorm ``γ``/``β`` of the channel, and the
    consumers' weight columns. So a removed channel outputs exactly 0 (never ``ReLU(β)``) and is
    read by nobody: the masked model computes what the thinned model (:mod:`.thinning.thin`) computes.
    The extra parameters (biases, ``γ``, ``β``) are kept in the same :class:`~.masks.MaskStore`, so
    they stay zero through training.
Selection
    A coupled channel is pruned only if the weights of all its Conv/Linear members are selected
    (``pruner.weights`` / ``pruner.exclude``): an excluded layer never changes shape. The network's
    input planes and output classes are never coupled channels that can be removed (see
    :mod:`.graph.dependency`), so no input/output-layer exclusion is needed.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.engine import PruningEngine, RankingView
from framework.pruning.graph.fx import weight_of
from framework.pruning.graph.groups import (
    IN,
    NORM,
    OUT,
    PARAM,
    ROLE_STRUCTURE,
    CoupledChannel,
    DependencyGraph,
    Member,
)
from framework.pruning.rules import RankingRule, keep_all_but_lowest_k, round_half_up
from framework.pruning.schedules import EpochSchedule
from framework.pruning.scores.bn_fold import FoldPair
from framework.pruning.scores.score_check import checked_scores
from framework.pruning.selection import SelectedParameter
from framework.pruning.spec import COUPLED, FILTER, HEAD, PrunerSpec
from framework.pruning.structures import expand_group_mask, to_groups


@dataclass
class _GroupPlan:
    name: str
    channels: list[CoupledChannel]  # the prunable ones
    weight_names: list[str]  # selected weights of its layers
    target_names: list[str]  # the ranked (scoring) layers' weights: their levels give the target


def concatenated_segments(channels: list[CoupledChannel]) -> dict[frozenset, list[int]]:
    """Positions of ``channels`` by the layers that produce them (their OUT members). One entry
    for an ordinary group or a residual sum (every channel has the same producers); one per
    producer for a concatenation."""
    segments: dict[frozenset, list[int]] = defaultdict(list)
    for position, channel in enumerate(channels):
        producers = frozenset(m.module for m in channel.members if m.role == OUT)
        segments[producers].append(position)
    return dict(segments)


def _weight(module: str) -> str:
    return f"{module}.weight"


def reduce_member_scores(scores: list[float], reduction: str) -> float:
    """One coupled channel's score from its members' scores (``group_reduction``)."""
    if reduction == "sum":
        return sum(scores)
    if reduction == "max":
        return max(scores)
    return sum(scores) / len(scores)


def scoring_members(channel: CoupledChannel, structure: str) -> list[Member]:
    """The members whose scores rank ``channel``: producers for filter, consumers for channel (a
    channel nobody reads falls back to its producers), every weight of a head for head."""
    if structure == HEAD:  # a head is ranked on all its weights: q, k, v rows and out columns
        return [m for m in channel.members if m.role != NORM]
    role = OUT if structure == FILTER else IN
    return channel.of(role) or channel.of(OUT) or channel.of(IN)


def _selectable(channel: CoupledChannel, selected: set[str]) -> bool:
    return all(_weight(m.module) in selected for m in channel.members if m.role in (OUT, IN))


def plan_groups(
    graph: DependencyGraph, selected: set[str], structure: str
) -> tuple[list[_GroupPlan], dict[str, nn.Parameter]]:
    """The groups ``structure`` ranks (heads for head, the other groups for filter/channel), with
    their prunable channels of ``selected`` weights, and the extra parameters their masks cover
    (biases, BatchNorm γ/β, parameters read in forward)."""
    plans: list[_GroupPlan] = []
    extras: dict[str, nn.Parameter] = {}
    kind = "head" if structure == HEAD else "channel"
    for group in graph.groups:
        if group.kind != kind:
            continue
        channels = [c for c in group.prunable if _selectable(c, selected)]
        if not channels:
            continue
        names = sorted({_weight(m.module) for c in channels for m in c.members if m.role in (OUT, IN)})
        scoring = sorted(
            {_weight(m.module) for c in channels for m in scoring_members(c, structure) if m.role != PARAM}
        )
        plans.append(_GroupPlan(group.name, channels, names, scoring or names))
        for channel in channels:
            extras.update(_extra_parameters(graph, channel))
    if not plans:
        raise _nothing_to_prune(graph, structure)
    return plans, extras


def _extra_parameters(graph: DependencyGraph, channel: CoupledChannel) -> dict[str, nn.Parameter]:
    extras: dict[str, nn.Parameter] = {}
    for member in channel.members:
        if member.role == PARAM:
            extras[member.module] = graph.parameters[member.module]
            continue
        module = graph.modules[member.module]
        attributes = ("bias",) if member.role == OUT else ("weight", "bias") if member.role == NORM else ()
        for attribute in attributes:
            param = getattr(module, attribute, None)
            if isinstance(param, nn.Parameter):
                extras[f"{member.module}.{attribute}"] = param
    return extras


def _nothing_to_prune(graph: DependencyGraph, structure: str) -> PruningError:
    if structure == HEAD:
        return PruningError(
            "pruner.structure=head finds no attention head that can be removed (heads are found in "
            "nn.MultiheadAttention, Swin v1 window attention, and scaled_dot_product_attention or matmul "
            "attention on [B, H, L, E] views whose head count is not a constant); "
            "use pruner.structure=filter or channel"
        )
    why = "; ".join(f"{e.op}: {e.reason}" for e in graph.exclusions if e.warned) or "every channel is fixed"
    return PruningError(
        f"pruner.coupling=coupled finds no channel of the selected layers that can be removed ({why}); "
        "select other layers or use pruner.coupling=layer"
    )


class CoupledPruningEngine(PruningEngine):
    """:class:`PruningEngine` that ranks and masks coupled channels (see the module docstring)."""

    coupling = COUPLED
    rule: RankingRule

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
        """``graph``: the model's dependency groups; the rest as :class:`PruningEngine`."""
        self.graph = graph
        self.modules = graph.modules
        self.group_reduction = spec.group_reduction
        self.round_to = spec.round_to or 1
        names = {p.name for p in selected}
        # the plans come first: the mask store and the calibration pass are built on them
        self.plans, self._extras = plan_groups(graph, names, spec.structure)
        # layer roles that keep channels whatever happens (fixed or unselected ones) need no guard
        self._roles_never_empty = {
            (m.module, m.role) for c in graph.channels() if c.fixed or not _selectable(c, names) for m in c.members
        }
        self._warned: set[str] = set()
        super().__init__(model, spec, selected, rule, schedule, finals, ranking_view, fold_pairs)

    def masked_parameters(self) -> dict[str, nn.Parameter]:
        params = super().masked_parameters()
        params.update({k: v for k, v in self._extras.items() if k not in params})
        return params

    def ranked_layers(self) -> dict[str, nn.Module]:
        layers = {}
        for plan in self.plans:
            for channel in plan.channels:
                for member in self._scoring_members(channel):
                    layers[_weight(member.module)] = self.modules[member.module]
        return layers

    def units(self) -> dict[str, tuple[str, ...]]:
        return {plan.name: tuple(plan.target_names) for plan in self.plans}

    # ----------------------------------------------------------------------------- ranking
    def channel_scores_of(self, module: str, role: str, cache: dict) -> list[float]:
        """Per-channel criterion scores of a layer role on the ranking view (``cache``: shared by
        one update's calls; python floats, cheap to index)."""
        key = (module, role, "view")
        if key not in cache:
            if role == PARAM:  # slices of a parameter read in forward, along its channel dim
                dim = self.graph.param_dims[module]
                rows = self.graph.parameters[module].detach().movedim(dim, 0)
                scores = self.rule.criterion(rows.reshape(rows.shape[0], -1))
            else:
                layer = self.modules[module]
                view = self.ranking_view(_weight(module), weight_of(layer))
                scores = checked_scores(self.rule.criterion, to_groups(view.detach(), ROLE_STRUCTURE[role], layer))
            cache[key] = scores.detach().double().cpu().tolist()
        return cache[key]

    def alive_flags_of(self, module: str, role: str, cache: dict) -> list[bool] | None:
        """Per-channel flags of a layer role: does the channel survive the masks (None: not masked yet)."""
        key = (module, role, "mask")
        if key not in cache:
            mask = self.store.get(module if role == PARAM else _weight(module))
            if mask is None:
                cache[key] = None
            elif role == PARAM:
                dim = self.graph.param_dims[module]
                cache[key] = mask.movedim(dim, 0).reshape(mask.shape[dim], -1).any(1).cpu().tolist()
            else:
                cache[key] = to_groups(mask, ROLE_STRUCTURE[role], self.modules[module]).any(dim=1).cpu().tolist()
        return cache[key]

    def _scoring_members(self, channel: CoupledChannel) -> list[Member]:
        return scoring_members(channel, self.structure)

    def _channel_score(self, channel: CoupledChannel, cache: dict) -> float:
        scores = []
        for member in self._scoring_members(channel):
            per_channel = self.channel_scores_of(member.module, member.role, cache)
            scores.append(sum(per_channel[i] for i in member.indices) / len(member.indices))
        return reduce_member_scores(scores, self.group_reduction)

    def is_alive(self, channel: CoupledChannel, cache: dict) -> bool:
        """Whether ``channel`` survives the current masks (``cache``: shared by one update's calls)."""
        for member in self._scoring_members(channel):
            flags = self.alive_flags_of(member.module, member.role, cache)
            if flags is not None:
                return any(flags[i] for i in member.indices)
        return True

    def _prune_count(self, plan: _GroupPlan, target: float) -> int:
        n = len(plan.channels)
        k = round_half_up(target * n)
        if k >= n:
            if plan.name not in self._warned:
                self._warned.add(plan.name)
                warnings.warn(
                    f"target sparsity {target:g} asks to remove all {n} prunable channels of the group of "
                    f"{plan.name}; one is kept",
                    stacklevel=4,
                )
            k = n - 1
        if self.round_to > 1 and n >= self.round_to:
            kept = min(n, math.ceil((n - k) / self.round_to) * self.round_to)
            k = n - kept
        elif self.round_to > n and f"round_to:{plan.name}" not in self._warned:
            self._warned.add(f"round_to:{plan.name}")  # said once per group, not per epoch
            warnings.warn(
                f"pruner.round_to={self.round_to} is larger than the group of {plan.name} ({n} prunable "
                "channels): its kept count is not rounded",
                stacklevel=4,
            )
        return k

    def _decide(self, plan: _GroupPlan, target: float, cache: dict) -> torch.Tensor:
        """Bool keep flag per prunable channel of ``plan``. A group fed by a concatenation (its
        channels come from different producers) gets the level on each producer's share, as a
        layer scope promises: ranking the whole group at once would empty one producer and keep
        the other whole (squeezenet's expand3x3 at 1 of 64 filters beside a full expand1x1)."""
        segments = concatenated_segments(plan.channels)
        if len(segments) <= 1:
            return self._decide_whole(plan, target, cache)
        keep = torch.ones(len(plan.channels), dtype=torch.bool)
        for producers, positions in segments.items():
            share = replace(
                plan,
                name=f"{plan.name} ({', '.join(sorted(producers))})",
                channels=[plan.channels[p] for p in positions],
            )
            keep[positions] = self._decide_whole(share, target, cache)
        return keep

    def _decide_whole(self, plan: _GroupPlan, target: float, cache: dict) -> torch.Tensor:
        scores = torch.tensor([self._channel_score(c, cache) for c in plan.channels], dtype=torch.float64)
        alive = torch.tensor([self.is_alive(c, cache) for c in plan.channels], dtype=torch.bool)
        k = self._prune_count(plan, target)
        if k <= int((~alive).sum()):
            keep = alive.clone()
        else:
            keep = keep_all_but_lowest_k(torch.where(alive, scores, -math.inf), k)
        return self._keep_one_per_layer(plan, keep, scores)

    def _keep_one_per_layer(self, plan: _GroupPlan, keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """A layer role whose every channel would go keeps its best-scored one (a layer of width 0
        would not be a layer). Only possible where several layers share a group (concatenations)."""
        holders: dict[tuple[str, str], list[int]] = defaultdict(list)
        for position, channel in enumerate(plan.channels):
            for member in channel.members:
                key = (member.module, member.role)
                if member.role != NORM and key not in self._roles_never_empty:
                    holders[key].append(position)
        for positions in holders.values():
            if not keep[positions].any():
                best = max(positions, key=lambda p: float(scores[p]))
                keep[best] = True
        return keep

    @torch.no_grad()
    def update_masks(self, epoch: int, fractional: float | None = None) -> None:
        self.prepare_ranking(epoch, fractional)
        targets = self.scheduled_targets(epoch, fractional)
        cache: dict = {}
        removed: list[CoupledChannel] = []
        for plan in self.plans:
            target = min(targets[name] for name in plan.target_names if name in targets)
            keep = self._decide(plan, target, cache)
            removed.extend(channel for channel, kept in zip(plan.channels, keep.tolist()) if not kept)
        self._apply_removed(removed)

    def _masks_for_removed(self, channels) -> dict[str, torch.Tensor]:
        """Keep-masks (weights, biases, BN γ/β) that remove the coupled ``channels``."""
        removed: dict[tuple[str, str], list[int]] = defaultdict(list)
        for channel in channels:
            for member in channel.members:
                removed[(member.module, member.role)].extend(member.indices)
        masks: dict[str, torch.Tensor] = {}
        for (module, role), indices in removed.items():
            width = self.graph.widths[(module, role)]
            flags = torch.ones(width, dtype=torch.bool)
            flags[indices] = False
            if role == PARAM:
                param, dim = self.graph.parameters[module], self.graph.param_dims[module]
                shape = [1] * param.dim()
                shape[dim] = width
                masks[module] = flags.reshape(shape).expand(param.shape).contiguous()
                continue
            layer = self.modules[module]
            if role == NORM:
                for attribute in ("weight", "bias"):
                    if isinstance(getattr(layer, attribute, None), nn.Parameter):
                        masks[f"{module}.{attribute}"] = flags
                continue
            weight_mask = expand_group_mask(flags, ROLE_STRUCTURE[role], layer, weight_of(layer).shape)
            name = _weight(module)
            masks[name] = weight_mask if name not in masks else masks[name] & weight_mask
            if role == OUT and isinstance(getattr(layer, "bias", None), nn.Parameter):
                masks[f"{module}.bias"] = flags
        return masks

    def _apply_removed(self, channels) -> None:
        """AND the masks that remove ``channels`` into the store and zero those weights now."""
        for name, mask in self._masks_for_removed(channels).items():
            self.store.update(name, mask, owned=False)
            self.store.zero_masked(name)

    # ----------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        return {**super().state_dict(), "coupling": self.coupling}
