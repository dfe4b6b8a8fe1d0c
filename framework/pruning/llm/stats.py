"""What a one-shot pruner keeps of a target's calibration inputs ``X`` (rows ``[tokens, in]``).

* column squares ``sum_t x_tj^2``: Wanda's activation norm per input channel (its score is
  ``|W_ij| * ||X_j||``), and the channel norms that rank heads and FFN channels;
* the Gram matrix ``X^T X`` (SparseGPT's Hessian up to a factor ``2 / tokens``, which neither the
  reconstruction nor its damping, a fraction of the mean diagonal, depends on), also what the
  reconstruction error ``||(W - W') X||^2 = tr(dW X^T X dW^T)`` is measured with.

Sums are kept in float32, or float64 for a float64 model (the equality tests run there).
"""

from __future__ import annotations

import torch

from framework.pruning.llm.targets import Target


def accumulation_dtype(weight: torch.Tensor) -> torch.dtype:
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


class Statistics:
    """Per-target sums over the calibration tokens; ``columns`` / ``gram`` say which are kept."""

    def __init__(self, columns: bool, gram: bool) -> None:
        self.want_columns, self.want_gram = columns, gram
        self.column_squares: dict[str, torch.Tensor] = {}
        self.gram: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, int] = {}

    def feed(self, target: Target, rows: torch.Tensor) -> None:
        rows = rows.detach().to(accumulation_dtype(target.weight()))
        name = target.name
        self.tokens[name] = self.tokens.get(name, 0) + rows.shape[0]
        if self.want_columns:
            squares = rows.square().sum(dim=0)
            previous = self.column_squares.get(name)
            self.column_squares[name] = squares if previous is None else previous + squares
        if self.want_gram:
            gram = rows.t() @ rows
            previous = self.gram.get(name)
            self.gram[name] = gram if previous is None else previous.add_(gram)

    def column_norms(self, name: str, columns: int, device: torch.device) -> torch.Tensor:
        """``||X_j||`` per input column (zeros for a target no token reached, e.g. an idle expert)."""
        squares = self.column_squares.get(name)
        if squares is None:
            return torch.zeros(columns, device=device)
        return squares.sqrt()


def reconstruction_error(before: torch.Tensor, after: torch.Tensor, gram: torch.Tensor) -> float:
    """``||(W - W') X||^2 / ||W X||^2`` from the Gram matrix of X (0: the layer's outputs are unchanged
    on the calibration tokens)."""
    weight = before.to(gram.dtype)
    delta = weight - after.to(gram.dtype)
    error = float(((delta @ gram) * delta).sum())
    reference = float(((weight @ gram) * weight).sum())
    return error / reference if reference > 0 else 0.0
