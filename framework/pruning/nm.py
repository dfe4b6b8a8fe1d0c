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
be coupled or thinned. :func:`check_nm_pattern` checks that every targeted tensor holds the pattern.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.pruners import Pruner, round_half_up

EXCLUDE_HINT = "exclude it with pruner.exclude=['{name}']"


def check_nm_request(n, m, method: str, coupling, thin, scope: str, levels, final_sparsity, fold_batchnorm=False) -> None:
    """The settings that N:M cannot take, one line each (raised as PruningError)."""
    for key, value in (("pruner.n", n), ("pruner.m", m)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PruningError(f"{key}={value!r} is invalid with pruner.structure=nm; allowed: an integer >= 1")
    if n >= m:
        raise PruningError(f"pruner.n={n} must be below pruner.m={m} (n of every m weights are kept); allowed: 1 <= n < m, e.g. 2:4")
    if method not in ("agp", "level"):
        raise PruningError(f"pruner.structure=nm needs a ranking pruner; got pruner.method={method}; allowed: agp | level")
    if coupling == "coupled" or thin not in (None, "never"):
        key, value = ("pruner.coupling", coupling) if coupling == "coupled" else ("pruner.thin", thin)
        raise PruningError(
            f"{key}={value} cannot be combined with pruner.structure=nm: N:M zeroes weights inside each block and "
            "does not shrink any shape, so there is nothing to couple or thin; allowed: pruner.coupling=null, pruner.thin=null"
        )
    if scope != "layer":
        raise PruningError(f"pruner.scope={scope} does not apply to pruner.structure=nm (every block holds n of m); allowed: layer")
    if levels:
        raise PruningError("pruner.levels does not apply to pruner.structure=nm (every layer holds n of m); allowed: {}")
    if fold_batchnorm == "activation":
        raise PruningError("fold_batchnorm=activation ranks whole channels and does not apply to pruner.structure=nm; allowed: true | false")
    pattern = (m - n) / m
    if final_sparsity is None or not math.isclose(float(final_sparsity), pattern, abs_tol=1e-9):
        raise PruningError(
            f"pruner.final_sparsity={final_sparsity} does not match pruner.n={n}, pruner.m={m} "
            f"(the pattern removes {m - n} of every {m}); allowed: pruner.final_sparsity={pattern:g}"
        )


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


class NMPruner(Pruner):
    """Keep at least ``n`` of every ``m`` weights; prune ``round(target * m)`` (<= m - n) per block."""

    structure = "nm"

    def __init__(self, n: int, m: int, criterion):
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
