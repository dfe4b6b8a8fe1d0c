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

import functools
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.engine import PruningEngine, RankingView
from framework.pruning.graph.channels import paused_gc
from framework.pruning.graph.fixed_heads import why_heads_stay
from framework.pruning.graph.fx import weight_of
from framework.pruning.graph.groups import (
    IN,
    NORM,
    OUT,
    PARAM,
    ROLE_STRUCTURE,
    CoupledChannel,
    DependencyGraph,
    DependencyGroup,
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
class _PlanTable:
    """A plan's channels read once into index arrays, so that each ranking is a few tensor ops
    rather than a loop over tens of thousands of members. Positions are the plan's (0..n-1).

    ``entries``: scoring member role -> (channel positions, member indices), one entry per index
    (a member holding several columns has several); ``holders``: layer role -> positions of the
    channels it holds (roles that may empty, norms excluded); ``segments``: producers -> positions."""

    entries: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]
    holders: dict[tuple[str, str], torch.Tensor]
    segments: dict[frozenset, list[int]]


@dataclass(eq=False)
class _GroupPlan:
    name: str
    group: DependencyGroup
    rows: torch.Tensor  # the plan's channels: their positions in the group (prunable, selected)
    weight_names: list[str]  # selected weights of its layers
    target_names: list[str]  # the ranked (scoring) layers' weights: their levels give the target
    table: _PlanTable = field(repr=False)

    @functools.cached_property
    def channels(self) -> list[CoupledChannel]:
        """The plan's channels as objects (what scope=global ranks one by one)."""
        channels = self.group.channels
        return [channels[r] for r in self.rows.tolist()]


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


def plan_groups(
    graph: DependencyGraph, selected: set[str], structure: str
) -> tuple[list[_GroupPlan], dict[str, nn.Parameter], set[tuple[str, str]]]:
    """The groups ``structure`` ranks (heads for head, the other groups for filter/channel), with
    their prunable channels of ``selected`` weights; the extra parameters their masks cover
    (biases, BatchNorm γ/β, parameters read in forward); and the layer roles that keep channels
    whatever happens (held by a fixed or unselected channel), which need no guard against emptying."""
    kind = "head" if structure == HEAD else "channel"
    chosen: list[tuple[DependencyGroup, torch.Tensor]] = []
    never_empty: set[tuple[str, str]] = set()
    for group in graph.groups:
        table = group.table
        kept = group.fixed.clone()  # fixed, or held by an unselected layer
        for (module, role), positions in zip(table.keys, table.positions):
            if role in (OUT, IN) and _weight(module) not in selected:
                kept[positions] = True
        for key, positions in zip(table.keys, table.positions):
            if bool(kept[positions].any()):
                never_empty.add(key)
        if group.kind == kind and not bool(kept.all()):
            chosen.append((group, ~kept))
    plans: list[_GroupPlan] = []
    extras: dict[str, nn.Parameter] = {}
    for group, choose in chosen:
        plan, keys = _plan(group, choose, structure, never_empty, graph)
        plans.append(plan)
        for module, role in keys:
            extras.update(_extra_parameters(graph, module, role))
    if not plans:
        raise _nothing_to_prune(graph, structure)
    return plans, extras, never_empty


def _scoring(structure: str, role: str, module: str, graph: DependencyGraph) -> str | None:
    """Whether a role's members rank a channel: "yes", "fallback" (only for channels that have no
    member of the primary role: a channel nobody reads is ranked on its producers) or None."""
    if structure == HEAD:  # all the weights of a head; a buffer read in forward is never scored
        return "yes" if role != NORM and (role != PARAM or module in graph.parameters) else None
    primary, fallback = (OUT, IN) if structure == FILTER else (IN, OUT)
    return "yes" if role == primary else "fallback" if role == fallback else None


def _plan(
    group: DependencyGroup,
    choose: torch.Tensor,
    structure: str,
    never_empty: set[tuple[str, str]],
    graph: DependencyGraph,
) -> tuple[_GroupPlan, set[tuple[str, str]]]:
    """One group's plan (its chosen channels) with its table, and every layer role they touch."""
    table = group.table
    rows = choose.nonzero().flatten()
    local = torch.full((group.size,), -1, dtype=torch.long)
    local[rows] = torch.arange(rows.numel())
    primary = torch.zeros(group.size, dtype=torch.bool)
    for (module, role), positions in zip(table.keys, table.positions):
        if _scoring(structure, role, module, graph) == "yes":
            primary[positions] = True
    entries: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    holders: dict[tuple[str, str], torch.Tensor] = {}
    producers: list[list[str]] = [[] for _ in range(rows.numel())]
    keys: set[tuple[str, str]] = set()
    for key, positions, indices in zip(table.keys, table.positions, table.indices):
        mine = choose[positions]
        if not bool(mine.any()):
            continue
        keys.add(key)
        held = torch.unique_consecutive(local[positions[mine]])
        if key[1] != NORM and key not in never_empty:
            holders[key] = held
        if key[1] == OUT:
            for p in held.tolist():
                producers[p].append(key[0])
        scoring = _scoring(structure, key[1], key[0], graph)
        if scoring == "fallback":
            mine = mine & ~primary[positions]
        if scoring is not None and bool(mine.any()):
            entries[key] = (local[positions[mine]], indices[mine])
    segments: dict[frozenset, list[int]] = defaultdict(list)
    for p, made_by in enumerate(producers):
        segments[frozenset(made_by)].append(p)
    names = sorted({_weight(module) for module, role in keys if role in (OUT, IN)})
    scoring_names = sorted({_weight(module) for module, role in entries if role != PARAM})
    plan_table = _PlanTable(entries, holders, dict(segments))
    return _GroupPlan(group.name, group, rows, names, scoring_names or names, plan_table), keys


def _extra_parameters(graph: DependencyGraph, module: str, role: str) -> dict[str, nn.Parameter]:
    """The parameters besides weights that a layer role's masks cover: a filter's bias, a norm's
    γ/β, a parameter read in forward (a buffer read in forward has no mask: it is only sliced)."""
    if role == PARAM:
        param = graph.parameters.get(module)
        return {} if param is None else {module: param}
    layer = graph.modules[module]
    attributes = ("bias",) if role == OUT else ("weight", "bias") if role == NORM else ()
    extras: dict[str, nn.Parameter] = {}
    for attribute in attributes:
        param = getattr(layer, attribute, None)
        if isinstance(param, nn.Parameter):
            extras[f"{module}.{attribute}"] = param
    return extras


def _nothing_to_prune(graph: DependencyGraph, structure: str) -> PruningError:
    if structure == HEAD:
        known = why_heads_stay(graph.modules)
        return PruningError(
            "pruner.structure=head finds no attention head that can be removed ("
            + (f"{known}; " if known else "")
            + "heads are found in nn.MultiheadAttention, Swin v1 window attention (torchvision, timm), "
            "and scaled_dot_product_attention or matmul attention on [B, H, L, E] views whose head count "
            "is not a constant); use pruner.structure=filter or channel"
        )
    why = "; ".join(f"{e.op}: {e.reason}" for e in graph.exclusions if e.warned) or "every channel is fixed"
    return PruningError(
        f"pruner.coupling=coupled finds no channel of the selected layers that can be removed ({why}); "
        "select other layers or use pruner.coupling=layer"
    )


def _keep_one_per_layer(holders: dict, keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """A layer role whose every channel would go keeps its best-scored one (a layer of width 0
    would not be a layer). Only possible where several layers share a group (concatenations).
    ``holders``: layer role -> positions (in ``keep``) of the channels it holds."""
    for positions in holders.values():
        if positions.numel() and not keep[positions].any():
            keep[positions[torch.argmax(scores[positions])]] = True
    return keep


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
        # the plans come first: the mask store and the calibration pass are built on them; layer
        # roles that keep channels whatever happens (fixed or unselected ones) need no guard
        with paused_gc():
            self.plans, self._extras, self._roles_never_empty = plan_groups(graph, names, spec.structure)
        self._warned: set[str] = set()
        super().__init__(model, spec, selected, rule, schedule, finals, ranking_view, fold_pairs)

    def masked_parameters(self) -> dict[str, nn.Parameter]:
        params = super().masked_parameters()
        params.update({k: v for k, v in self._extras.items() if k not in params})
        return params

    def ranked_layers(self) -> dict[str, nn.Module]:
        layers = {}
        for plan in self.plans:
            for module, role in self._table(plan).entries:
                if role != PARAM:
                    layers[_weight(module)] = self.modules[module]
        return layers

    def units(self) -> dict[str, tuple[str, ...]]:
        return {plan.name: tuple(plan.target_names) for plan in self.plans}

    # ----------------------------------------------------------------------------- ranking
    def _table(self, plan: _GroupPlan) -> _PlanTable:
        return plan.table

    def channel_score_tensor(self, module: str, role: str, cache: dict) -> torch.Tensor:
        """Per-channel criterion scores (float64, CPU) of a layer role on the ranking view
        (``cache``: shared by one update's calls)."""
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
            cache[key] = scores.detach().double().cpu()
        return cache[key]

    def channel_scores_of(self, module: str, role: str, cache: dict) -> list[float]:
        """:meth:`channel_score_tensor` as python floats."""
        key = (module, role, "list")
        if key not in cache:
            cache[key] = self.channel_score_tensor(module, role, cache).tolist()
        return cache[key]

    def alive_tensor_of(self, module: str, role: str, cache: dict) -> torch.Tensor | None:
        """Per-channel flags of a layer role: does the channel survive the masks (None: not masked yet)."""
        key = (module, role, "mask")
        if key not in cache:
            mask = self.store.get(module if role == PARAM else _weight(module))
            if mask is None:
                cache[key] = None
            elif role == PARAM:
                dim = self.graph.param_dims[module]
                cache[key] = mask.movedim(dim, 0).reshape(mask.shape[dim], -1).any(1).cpu()
            else:
                cache[key] = to_groups(mask, ROLE_STRUCTURE[role], self.modules[module]).any(dim=1).cpu()
        return cache[key]

    def alive_flags_of(self, module: str, role: str, cache: dict) -> list[bool] | None:
        """:meth:`alive_tensor_of` as python bools."""
        key = (module, role, "mask list")
        if key not in cache:
            flags = self.alive_tensor_of(module, role, cache)
            cache[key] = None if flags is None else flags.tolist()
        return cache[key]

    def _scoring_members(self, channel: CoupledChannel) -> list[Member]:
        parameters = self.graph.parameters
        return [m for m in scoring_members(channel, self.structure) if m.role != PARAM or m.module in parameters]

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

    def plan_scores(self, plan: _GroupPlan, cache: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Every channel's score (float64) and whether it survives the masks, for all of ``plan``
        at once: what :meth:`_channel_score` and :meth:`is_alive` give one channel at a time (the
        same sums in the same order, so the same floats)."""
        n = plan.rows.numel()
        total = torch.zeros(n, dtype=torch.float64)
        best = torch.full((n,), -math.inf, dtype=torch.float64)
        members = torch.zeros(n, dtype=torch.long)
        alive = torch.ones(n, dtype=torch.bool)
        decided = torch.zeros(n, dtype=torch.bool)
        for (module, role), (positions, indices) in self._table(plan).entries.items():
            counts = torch.bincount(positions, minlength=n)
            present = counts > 0
            per_channel = self.channel_score_tensor(module, role, cache)
            sums = torch.zeros(n, dtype=torch.float64).index_add_(0, positions, per_channel[indices])
            mean = sums / counts.clamp_min(1)
            total += torch.where(present, mean, 0.0)
            best = torch.where(present, torch.maximum(best, mean), best)
            members += present
            flags = self.alive_tensor_of(module, role, cache)
            if flags is not None:
                any_alive = torch.zeros(n, dtype=torch.long).index_add_(0, positions, flags[indices].long()) > 0
                first = present & ~decided
                alive[first] = any_alive[first]
                decided |= present
        if self.group_reduction == "max":
            return best, alive
        return (total if self.group_reduction == "sum" else total / members.clamp_min(1)), alive

    def _prune_count(self, name: str, n: int, target: float) -> int:
        k = round_half_up(target * n)
        if k >= n:
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(
                    f"target sparsity {target:g} asks to remove all {n} prunable channels of the group of "
                    f"{name}; one is kept",
                    stacklevel=4,
                )
            k = n - 1
        if self.round_to > 1 and n >= self.round_to:
            kept = min(n, math.ceil((n - k) / self.round_to) * self.round_to)
            k = n - kept
        elif self.round_to > n and f"round_to:{name}" not in self._warned:
            self._warned.add(f"round_to:{name}")  # said once per group, not per epoch
            warnings.warn(
                f"pruner.round_to={self.round_to} is larger than the group of {name} ({n} prunable "
                "channels): its kept count is not rounded",
                stacklevel=4,
            )
        return k

    def _decide(self, plan: _GroupPlan, target: float, cache: dict) -> torch.Tensor:
        """Bool keep flag per prunable channel of ``plan``. A group fed by a concatenation (its
        channels come from different producers) gets the level on each producer's share, as a
        layer scope promises: ranking the whole group at once would empty one producer and keep
        the other whole (squeezenet's expand3x3 at 1 of 64 filters beside a full expand1x1)."""
        scores, alive = self.plan_scores(plan, cache)
        segments = self._table(plan).segments
        if len(segments) <= 1:
            return self._decide_whole(plan.name, target, scores, alive, self._table(plan).holders)
        keep = torch.ones(plan.rows.numel(), dtype=torch.bool)
        local = torch.full((plan.rows.numel(),), -1, dtype=torch.long)
        for producers, positions in segments.items():
            rows = torch.tensor(positions)
            local[rows] = torch.arange(len(positions))
            holders = {key: local[held][local[held] >= 0] for key, held in self._table(plan).holders.items()}
            name = f"{plan.name} ({', '.join(sorted(producers))})"
            keep[rows] = self._decide_whole(name, target, scores[rows], alive[rows], holders)
            local[rows] = -1
        return keep

    def _decide_whole(
        self, name: str, target: float, scores: torch.Tensor, alive: torch.Tensor, holders: dict
    ) -> torch.Tensor:
        k = self._prune_count(name, scores.numel(), target)
        if k <= int((~alive).sum()):
            keep = alive.clone()
        else:
            keep = keep_all_but_lowest_k(torch.where(alive, scores, -math.inf), k)
        return _keep_one_per_layer(holders, keep, scores)

    def _keep_one_per_layer(self, plan: _GroupPlan, keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return _keep_one_per_layer(self._table(plan).holders, keep, scores)

    @torch.no_grad()
    def update_masks(self, epoch: int, fractional: float | None = None) -> None:
        self.prepare_ranking(epoch, fractional)
        targets = self.scheduled_targets(epoch, fractional)
        cache: dict = {}
        removed: dict[tuple[str, str], list[torch.Tensor]] = defaultdict(list)
        with paused_gc():
            for plan in self.plans:
                target = min(targets[name] for name in plan.target_names if name in targets)
                gone = torch.zeros(plan.group.size, dtype=torch.bool)
                gone[plan.rows[~self._decide(plan, target, cache)]] = True
                table = plan.group.table
                for key, positions, indices in zip(table.keys, table.positions, table.indices):
                    hit = gone[positions]
                    if bool(hit.any()):
                        removed[key].append(indices[hit])
            masks = self._masks_for_indices({key: torch.cat(parts) for key, parts in removed.items()})
            for name, mask in masks.items():
                self.store.update(name, mask, owned=False)
                self.store.zero_masked(name)

    def _masks_for_removed(self, channels) -> dict[str, torch.Tensor]:
        """Keep-masks (weights, biases, BN γ/β) that remove the coupled ``channels``."""
        removed: dict[tuple[str, str], list[int]] = defaultdict(list)
        for channel in channels:
            for member in channel.members:
                removed[(member.module, member.role)].extend(member.indices)
        return self._masks_for_indices({key: torch.tensor(indices) for key, indices in removed.items()})

    def _masks_for_indices(self, removed: Mapping[tuple[str, str], torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keep-masks (weights, biases, BN γ/β) that remove channels ``removed[(module, role)]``."""
        masks: dict[str, torch.Tensor] = {}
        for (module, role), indices in removed.items():
            width = self.graph.widths[(module, role)]
            flags = torch.ones(width, dtype=torch.bool)
            flags[indices] = False
            if role == PARAM:
                if module not in self.graph.parameters:
                    continue  # a buffer read in forward (running statistics): no mask, only sliced
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
