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

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from torch import nn

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
MIXING_REASON = "it mixes the channel dim with another dim in a way that cannot be tracked"
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
class DependencyGroup:
    """Coupled channels ranked together under one target (they share a layer)."""

    name: str  # the first producer layer, for messages
    channels: list[CoupledChannel]

    @property
    def prunable(self) -> list[CoupledChannel]:
        return [c for c in self.channels if not c.fixed]

    @property
    def kind(self) -> str:
        """``"head"`` for the heads of an attention block, ``"channel"`` otherwise."""
        return "head" if self.channels and all(c.head for c in self.channels) else "channel"


@dataclass
class Exclusion:
    """Channels fixed because of ``op``: ``reason`` says why, ``layers`` which layers it keeps whole."""

    op: str
    reason: str
    layers: tuple[str, ...]
    warned: bool
    sites: tuple[str, ...] = ()  # the graph nodes of an unknown op


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

    def channels(self) -> Iterable[CoupledChannel]:
        for group in self.groups:
            yield from group.channels
