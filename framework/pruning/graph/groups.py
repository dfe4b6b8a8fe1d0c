"""What the dependency graph is made of: members, coupled channels, dependency groups, exclusions.

*member*
    Channels of one layer in one role: ``out`` (a Conv/ConvTranspose/Linear filter: weight rows and
    the bias entry), ``in`` (a consumer's input channel: weight columns), ``norm`` (a BatchNorm /
    InstanceNorm channel: ``γ``, ``β``, running statistics), ``param`` (slices of a parameter read in
    forward along its channel dim: a layer scale, a class token, a position embedding, the q/k/v rows
    of an ``nn.MultiheadAttention``'s ``in_proj_weight``; :attr:`DependencyGraph.param_dims` gives the dim).
*coupled channel*
    One unit of removal: the members removed together.
*dependency group*
    The coupled channels ranked against each other with one target (they share a layer role).

The reasons why channels are *fixed* (never removed) are named here too: the builder records them,
the assembly tells the structural ones (no change to the code around them would help) apart.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from framework.pruning.graph.constants import AttributeResize
from framework.pruning.spec import CHANNEL, FILTER

OUT, IN, NORM, PARAM = "out", "in", "norm", "param"
ROLES = (OUT, IN, NORM, PARAM)  # PARAM: slices of a parameter read in forward (layer scale, in_proj rows)
# which structure of a layer's weight a member's role is
ROLE_STRUCTURE = {OUT: FILTER, IN: CHANNEL}

# ----------------------------------------------------------------------------- why channels are fixed
UNKNOWN_REASON = "its effect on channels is not known"
CONSTANT_INDEX_REASON = "indexes along the channel dim with constants fixed in the code"
SPLIT_REASON = "its split sizes are fixed in the code"
HEAD_REASON = "nn.MultiheadAttention keeps its embedding width (its heads can be removed with pruner.structure=head)"
NORMALISED_REASON = "it normalises over these channels, so removing one would change the others"
FIXED_SIZE_REASON = "its size along the channels is fixed in the code"
WINDOW_REASON = (
    "shifted-window attention keeps its embedding width (the heads of a v1 block can be removed "
    "with pruner.structure=head)"
)
SIZE_READ_REASON = (
    "their count is read at run time (x.size(), x.shape) and used as a number, which thinning would change"
)
MIXING_REASON = "it mixes the channel dim with another dim in a way that cannot be tracked"
KEPT_ATTRIBUTE_REASON = (
    "this module attribute sizes these channels, but forward also reads it in a way thinning cannot "
    "rewrite (arithmetic on it, a comparison, a loop, an op the graph does not follow), so it keeps its value"
)
GROUPS_REASON = "its group count is fixed in the code, so only whole groups could go and their count cannot change"
# channels kept for a reason no change to the code around them would remove
STRUCTURAL_REASONS = (NORMALISED_REASON, HEAD_REASON, WINDOW_REASON)


class Member(NamedTuple):
    """Channels ``indices`` of ``module`` in ``role`` (``out`` / ``in`` / ``norm``). A named tuple:
    large models have tens of thousands of them."""

    module: str
    role: str
    indices: tuple[int, ...]


@dataclass
class CoupledChannel:
    """A set of members removed together (one channel of every tensor it runs through)."""

    members: tuple[Member, ...]
    fixed: bool = False  # True: never removed (network input/output, constants, unknown ops)
    head: bool = False  # True: a whole attention head (removed by structure=head only)

    def of(self, role: str) -> list[Member]:
        return [m for m in self.members if m.role == role]


@dataclass
class MemberTable:
    """A group's members by layer role, as index arrays: for the ``k``-th (module, role) key,
    ``positions[k][e]`` is the channel (its position in the group) of entry ``e`` and
    ``indices[k][e]`` the index it has in that layer role; entries sorted by (position, index).
    What ranking, masking and thinning read: a few tensor ops per layer role instead of a loop
    over tens of thousands of members."""

    keys: list[tuple[str, str]]  # sorted
    positions: list[torch.Tensor]
    indices: list[torch.Tensor]


@dataclass(eq=False)
class DependencyGroup:
    """Coupled channels ranked together under one target (they share a layer)."""

    name: str  # the first producer layer, for messages
    table: MemberTable
    fixed: torch.Tensor  # bool per channel: never removed (network input/output, constants, unknown ops)
    head: torch.Tensor  # bool per channel: a whole attention head (removed by structure=head only)

    @property
    def size(self) -> int:
        return int(self.fixed.numel())

    @functools.cached_property
    def channels(self) -> list[CoupledChannel]:
        """The coupled channels, as objects (built on first use from :attr:`table`)."""
        members: list[list[Member]] = [[] for _ in range(self.size)]
        for (module, role), positions, indices in zip(self.table.keys, self.table.positions, self.table.indices):
            runs = torch.unique_consecutive(positions, return_counts=True)
            start = 0
            index_list = indices.tolist()
            for position, count in zip(runs[0].tolist(), runs[1].tolist()):
                members[position].append(Member(module, role, tuple(index_list[start : start + count])))
                start += count
        fixed, head = self.fixed.tolist(), self.head.tolist()
        return [CoupledChannel(tuple(m), f, h) for m, f, h in zip(members, fixed, head)]

    @property
    def prunable(self) -> list[CoupledChannel]:
        return [c for c in self.channels if not c.fixed]

    @property
    def kind(self) -> str:
        """``"head"`` for the heads of an attention block, ``"channel"`` otherwise."""
        return "head" if self.size and bool(self.head.all()) else "channel"


@dataclass
class Exclusion:
    """Channels fixed because of ``op``: ``reason`` says why, ``layers`` which layers it keeps whole."""

    op: str
    reason: str
    layers: tuple[str, ...]
    warned: bool
    sites: tuple[str, ...] = ()  # the graph nodes of an unknown op


@dataclass
class ResizedAttribute:
    """A module attribute that sizes channels in forward (``num_heads``, a split size, a slice
    bound; :mod:`.constants`): thinning sets ``name`` to ``resize.rewritten(n)``, where ``n`` counts
    the surviving ``units`` (one per position along the dim it sizes: (group index, position in
    the group); None: a position with no layer, which always survives)."""

    name: str
    resize: AttributeResize
    units: list[tuple[int, int] | None] = field(repr=False)


@dataclass
class DependencyGraph:
    """The result of :func:`~.dependency.build_dependency_graph`."""

    groups: list[DependencyGroup]
    exclusions: list[Exclusion]
    # (module name, role) -> channel count of that role (out/in channels, norm features)
    widths: dict[tuple[str, str], int]
    modules: dict[str, nn.Module] = field(repr=False)
    # PARAM members: parameter name -> the dim its slices are taken along
    param_dims: dict[str, int] = field(default_factory=dict)
    parameters: dict[str, nn.Parameter] = field(default_factory=dict, repr=False)
    # module attributes thinning rewrites (head counts, split sizes, slice bounds)
    attributes: list[ResizedAttribute] = field(default_factory=list)

    def channels(self) -> Iterable[CoupledChannel]:
        for group in self.groups:
            yield from group.channels
