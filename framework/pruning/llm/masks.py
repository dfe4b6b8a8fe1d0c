"""Keep-masks from scores, for one ``[out, in]`` matrix (True = keep, the project's convention).

Three comparison groups, as the papers use them:

* ``layer``: the lowest ``int(sparsity * numel)`` scores of the whole matrix (magnitude and random,
  as in the magnitude baselines of Wanda and SparseGPT);
* ``row``: the lowest ``int(sparsity * in)`` of every output row (Wanda's per-output comparison);
* N:M: the lowest ``m - n`` of every block of ``m`` consecutive inputs (the blocks of
  :mod:`framework.pruning.nm`, whose validator checks the result).

Ties go to the lower position (stable sort), so a mask is a function of the scores alone.
"""

from __future__ import annotations

import torch

from framework.pruning.nm import from_blocks, to_blocks

LAYER, ROW = "layer", "row"


def prune_count(total: int, sparsity: float) -> int:
    """``int(total * sparsity)``, safe from float error (0.7 * 10 is 6.999...)."""
    return int(total * sparsity + 1e-9)


def lowest_keep(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Keep-mask of a 1-D or row-wise 2-D ``scores`` without its ``count`` lowest entries (per row)."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if count <= 0:
        return keep
    lowest = scores.argsort(dim=-1, stable=True)[..., :count]
    return keep.scatter_(-1, lowest, False)


def nm_keep(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` highest of every ``m`` consecutive inputs of each row."""
    blocks = to_blocks(scores, m)
    return from_blocks(lowest_keep(blocks, m - n), scores.shape)


def keep_mask(scores: torch.Tensor, sparsity: float, group: str, nm: tuple[int, int] | None) -> torch.Tensor:
    """The keep-mask of a ``[out, in]`` score matrix at ``sparsity`` (ignored when ``nm`` is given)."""
    if nm is not None:
        return nm_keep(scores, *nm)
    if group == ROW:
        return lowest_keep(scores, prune_count(scores.shape[1], sparsity))
    flat = lowest_keep(scores.reshape(-1), prune_count(scores.numel(), sparsity))
    return flat.reshape(scores.shape)
