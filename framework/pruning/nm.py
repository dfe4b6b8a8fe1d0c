"""N:M semi-structured sparsity: in every block of ``m`` consecutive weights along a layer's input
dimension, at most ``n`` are non-zero (2:4 is what sparse tensor cores execute).

Blocks. A ``Linear`` weight ``[O, I]`` is cut into blocks ``W[o, j*m:(j+1)*m]``; a ``Conv`` weight
``[O, I/g, k...]`` into blocks of ``m`` consecutive input channels at the same output channel and
kernel position ``W[o, j*m:(j+1)*m, kh, kw]`` (the reduction dimension of the channels-last
implicit GEMM that sparse kernels run), so ``m`` must divide ``I/g``. ConvTranspose weights
(input first) are not blocked.

Ranking. Each weight is scored by the criterion on its own (as ``fine`` would score it) and, inside
each block, the ``k`` lowest are zeroed, ties by position. ``k = round(target * m)``, at most
``m - n``: on an AGP schedule from 0 to the pattern's sparsity ``(m - n) / m`` every block loses
its weights gradually, and the last pruning epoch leaves exactly ``n`` per block. Weights already
pruned rank lowest, so masks never regrow.

N:M does not change any shape: the model stays dense with zeros (exported as such), so it cannot
be coupled or thinned. The settings N:M cannot take are rules of :mod:`.spec` (``nm_problems``);
the layers it cannot block are named by :func:`check_nm_layers`; :func:`check_nm_pattern` checks
that every targeted tensor holds the pattern.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.rules import MaskRule, round_half_up
from framework.pruning.scores.criteria import Criterion

EXCLUDE_HINT = "exclude it with pruner.exclude=['{name}']"


def _check_layer(name: str, layer: nn.Module | None, shape: torch.Size, m: int) -> None:
    if not isinstance(layer, (nn.Linear, nn.modules.conv._ConvNd)) or getattr(layer, "transposed", False):
        raise PruningError(
            f"pruner.structure=nm blocks Conv and Linear weights along their input dimension; {name} belongs to a "
            f"{type(layer).__name__}; {EXCLUDE_HINT.format(name=name)}"
        )
    if shape[1] % m:
        raise PruningError(
            f"pruner.m={m} does not divide the input dimension of {name} ({shape[1]}, weight shape "
            f"{tuple(shape)}); {EXCLUDE_HINT.format(name=name)} or choose an m that divides it"
        )


def check_nm_layers(named_layers, m: int) -> None:
    """``named_layers``: ``(weight name, owning layer, weight shape)`` of every selected weight."""
    for name, layer, shape in named_layers:
        _check_layer(name, layer, torch.Size(shape), m)


def to_blocks(weight: torch.Tensor, m: int) -> torch.Tensor:
    """``weight`` as ``[n_blocks, m]``: the input dimension (dim 1) moved last and cut into runs of m."""
    return weight.movedim(1, -1).reshape(-1, m)


def from_blocks(blocks: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`to_blocks` for a tensor of weight ``shape``."""
    moved = (shape[0], *shape[2:], shape[1])
    return blocks.reshape(moved).movedim(-1, 1).contiguous()


class NMRule(MaskRule):
    """Keep at least ``n`` of every ``m`` weights; prune ``round(target * m)`` (<= m - n) per block."""

    structure = "nm"

    criterion: Criterion

    def __init__(self, n: int, m: int, criterion: Criterion):
        self.n, self.m, self.criterion = n, m, criterion

    def keep_mask(self, view, layer, target, current):
        view = view.detach()
        k = min(round_half_up(float(target) * self.m), self.m - self.n)
        if k <= 0:
            if current is None:
                return torch.ones(view.shape, dtype=torch.bool, device=view.device)
            return current.clone().to(torch.bool)
        scores = self.criterion(view.reshape(-1, 1)).reshape(view.shape).float()
        if current is not None:  # pruned weights rank lowest, so they count towards k
            scores = torch.where(current.to(torch.bool), scores, -math.inf)
        blocks = to_blocks(scores, self.m)
        lowest = blocks.argsort(dim=1, stable=True)[:, :k]
        keep_blocks = torch.ones_like(blocks, dtype=torch.bool).scatter_(1, lowest, False)
        return from_blocks(keep_blocks, view.shape)

    def state_dict(self):
        return self.criterion.state_dict() if hasattr(self.criterion, "state_dict") else {}

    def load_state_dict(self, state):
        if hasattr(self.criterion, "load_state_dict"):
            self.criterion.load_state_dict(state)


def nm_violations(tensor: torch.Tensor, n: int, m: int) -> int:
    """How many blocks of ``tensor`` hold more than ``n`` non-zeros (0: the pattern holds)."""
    return int(((to_blocks(tensor.detach(), m) != 0).sum(dim=1) > n).sum())


def check_nm_pattern(model: nn.Module, names, n: int, m: int) -> None:
    """Raise PruningError unless every weight in ``names`` has at most ``n`` non-zeros in each block of ``m``."""
    parameters = dict(model.named_parameters())
    for name in names:
        weight = parameters[name]
        bad = nm_violations(weight, n, m)
        if bad:
            total = weight.numel() // m
            raise PruningError(f"{name} breaks the {n}:{m} pattern in {bad} of its {total} blocks")
