"""The channel ids one tensor carries, and the union-find that couples ids into removable units.

Every tensor of the graph gets one id per channel (:class:`Channels`); two ids that must be removed
together are united (:class:`UnionFind`). After an embedding is split into heads the channels span
several dims: :attr:`Channels.axes` lists them and the ids run over them row-major.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while the block runs. Building a graph (or ranking and
    thinning its channels) allocates some 10^5 small objects that all live to the end: each
    collection the allocations trigger rescans the whole heap (the model's tensors, the fx graph),
    which cost 60 % of building resnet50's graph. Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Channels:
    """Channel ids of one tensor: ``ids[i]`` is channel ``i`` along dim ``dim`` of a tensor of ``shape``.

    After an embedding is split into heads (``[B, L, H, hd]``) the channels span several dims:
    ``axes`` (increasing) lists them and ``ids`` runs over them in row-major order; ``dim`` is then
    ``axes[0]``. Only the layout handlers (:mod:`.layouts`, :mod:`.heads`) accept such values."""

    ids: list[int]
    dim: int
    shape: tuple[int, ...]
    axes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.axes:
            self.axes = (self.dim,)

    @property
    def multi(self) -> bool:
        return len(self.axes) > 1

    def grid(self) -> torch.Tensor:
        """The ids as a tensor over ``axes`` (sizes ``shape[a]``)."""
        return torch.tensor(self.ids, dtype=torch.long).reshape([self.shape[a] for a in self.axes])

    def broadcast_grid(self) -> torch.Tensor:
        """The ids as a tensor broadcastable to ``shape`` (size 1 on the other dims)."""
        sizes = [self.shape[d] if d in self.axes else 1 for d in range(len(self.shape))]
        return torch.tensor(self.ids, dtype=torch.long).reshape(sizes)


def channels_from_full(full: torch.Tensor) -> Channels | None:
    """The channels of a tensor whose every element holds its channel id (``full``): the dims along
    which ids vary; None when the ids depend on a dim in a way that is not a product (mixing)."""
    shape = tuple(full.shape)
    if full.numel() == 0:
        return None
    axes = []
    reduced = full
    for d in range(full.dim()):
        first = reduced.narrow(d, 0, 1)
        if bool((reduced == first).all()):
            reduced = first
        else:
            axes.append(d)
    if not axes or not bool((full == reduced.expand(shape)).all()):
        return None
    ids = reduced.flatten().tolist()
    if len(axes) > 1 and len(set(ids)) != len(ids):
        return None  # a channel spread over several positions of a grid: not a product of dims
    return Channels(ids, axes[0], shape, tuple(axes))


class UnionFind:
    """Ids ``0..n-1`` in disjoint sets; the smallest id of a set is its root."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, count: int) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return list(range(start, start + count))

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def roots(self) -> list[int]:
        """The root of every id, in one pass: a parent is never larger than its child (unions hang
        the larger root under the smaller), so a parent's root is known before its child's."""
        parent = self.parent
        roots = list(parent)
        for i, p in enumerate(parent):
            if p != i:
                roots[i] = roots[p]
        return roots

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def unite(self, firsts: Iterable[int], seconds: Iterable[int]) -> None:
        """``union(a, b)`` for each pair of ``zip(firsts, seconds)``, in that order; one call for a
        whole tensor's channels (the walk's hottest loop), with ``find`` inlined."""
        parent = self.parent
        for a, b in zip(firsts, seconds):
            ra = a
            while parent[ra] != ra:
                ra = parent[ra]
            while parent[a] != ra:
                parent[a], a = ra, parent[a]
            rb = b
            while parent[rb] != rb:
                rb = parent[rb]
            while parent[b] != rb:
                parent[b], b = rb, parent[b]
            if ra < rb:
                parent[rb] = ra
            elif rb < ra:
                parent[ra] = rb
