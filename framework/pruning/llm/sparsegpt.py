"""SparseGPT (Frantar & Alistarh, 2023): prune a matrix column by column and let the columns not
yet visited absorb each pruned weight's error, so that ``W' X`` stays close to ``W X`` on the
calibration inputs.

With ``H = X^T X + lambda I`` (``lambda`` a fraction ``damping`` of the mean diagonal) and ``U``
the upper Cholesky factor of ``H^-1``, visiting column ``i`` zeroes the weights chosen for it and
spreads the error ``(w_i - q_i) / U_ii`` over the later columns along row ``i`` of ``U`` (the
optimal brain surgeon update restricted to the columns to come). Columns are handled in blocks of
``block``: inside a block the update is immediate, to the right of it it is applied once per block
(the paper's lazy batch update). The mask is chosen per block from ``w^2 / U_ii^2`` (adaptive mask
selection): the lowest ``sparsity`` share of the block, or for N:M the ``m - n`` lowest of every
``m`` columns, picked when the first of them is reached.
"""

from __future__ import annotations

import torch

from framework.errors import PruningError
from framework.pruning.llm.masks import lowest_keep, prune_count


def _inverse_factor(gram: torch.Tensor, damping: float, name: str) -> torch.Tensor:
    """The upper Cholesky factor of ``(gram + damping * mean(diag) I)^-1``."""
    hessian = gram.clone()
    hessian.diagonal().add_(damping * float(hessian.diagonal().mean()))
    try:
        lower = torch.linalg.cholesky(hessian)
        return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
    except RuntimeError:  # torch.linalg.LinAlgError derives from it
        raise PruningError(
            f"SparseGPT: the calibration Hessian of {name} is not positive definite with damping={damping}; "
            "allowed: a larger pruner.damping (e.g. 0.1) or more calibration samples"
        ) from None


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    gram: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    block: int = 128,
    damping: float = 0.01,
    name: str = "the layer",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` ``[out, in]`` pruned and reconstructed; returns ``(new weight, keep mask)``."""
    work = weight.detach().to(gram.dtype).clone()
    gram = gram.clone()
    dead = gram.diagonal() == 0  # inputs no calibration token ever used: nothing to preserve there
    gram[dead, dead] = 1.0
    work[:, dead] = 0.0
    factor = _inverse_factor(gram, damping, name)
    rows, columns = work.shape
    keep = torch.ones((rows, columns), dtype=torch.bool, device=work.device)
    for start in range(0, columns, block):
        end = min(start + block, columns)
        part = work[:, start:end].clone()
        part_factor = factor[start:end, start:end]
        diagonal = part_factor.diagonal()
        errors = torch.zeros_like(part)
        if nm is None:
            scores = part.square() / diagonal.square()
            pruned = ~lowest_keep(scores.reshape(-1), prune_count(scores.numel(), sparsity)).reshape(part.shape)
        else:
            pruned = torch.zeros_like(part, dtype=torch.bool)
        for i in range(end - start):
            if nm is not None and i % nm[1] == 0:
                window = slice(i, i + nm[1])
                scores = part[:, window].square() / diagonal[window].square()
                pruned[:, window] = ~lowest_keep(scores, nm[1] - nm[0])
            column = part[:, i]
            kept = column.masked_fill(pruned[:, i], 0.0)
            error = (column - kept) / part_factor[i, i]
            part[:, i:] -= error.unsqueeze(1) * part_factor[i, i:].unsqueeze(0)
            part[:, i] = kept
            errors[:, i] = error
        work[:, start:end] = part
        work[:, end:] -= errors @ factor[start:end, end:]
        keep[:, start:end] = ~pruned
    return work.to(weight.dtype), keep
