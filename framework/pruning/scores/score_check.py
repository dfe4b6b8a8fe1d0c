"""A criterion's scores are checked before they rank anything.

A criterion may be the user's own (``pruner.criterion._target_=my_pkg.MyCriterion``). Scores that
are not one number per group would crash inside torch with a message about tensors, and NaN scores
would rank nothing (the run prunes nothing and still reports success). Either is one
:class:`PruningError` line naming the criterion.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from framework.errors import PruningError


def criterion_name(criterion: object) -> str:
    """``my_pkg.MyCriterion`` for an instance, ``my_pkg.score`` for a plain function (also when
    wrapped in a FunctionCriterion, which keeps it as ``function``)."""
    criterion = getattr(criterion, "function", criterion)
    named = criterion if hasattr(criterion, "__qualname__") else type(criterion)
    return f"{named.__module__}.{named.__qualname__}"


def checked_scores(criterion: Callable[[torch.Tensor], torch.Tensor], groups: torch.Tensor) -> torch.Tensor:
    """``criterion(groups)``: one real, non-NaN score per row of ``groups`` ([n_groups, group_size])."""
    scores = criterion(groups)
    name = criterion_name(criterion)
    expected = (groups.shape[0],)
    if not isinstance(scores, torch.Tensor):
        raise PruningError(
            f"pruner.criterion {name} returned a {type(scores).__name__}; allowed: a tensor of {expected[0]} scores, "
            "one per group"
        )
    if tuple(scores.shape) != expected:
        raise PruningError(
            f"pruner.criterion {name} returned scores of shape {list(scores.shape)} for {expected[0]} groups; "
            f"allowed: shape [{expected[0]}], one score per group"
        )
    if scores.is_complex() or scores.dtype == torch.bool:
        raise PruningError(f"pruner.criterion {name} returned scores of dtype {scores.dtype}; allowed: real numbers")
    if scores.is_floating_point() and bool(torch.isnan(scores).any()):
        count = int(torch.isnan(scores).sum())
        raise PruningError(
            f"pruner.criterion {name} returned NaN for {count} of {expected[0]} groups; allowed: real numbers "
            "(NaN ranks nothing: the layer would not be pruned)"
        )
    return scores
