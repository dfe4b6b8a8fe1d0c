"""Ranking criteria: one importance score per group (higher = more important, pruned last).

``l1``
    Mean absolute value over the group. Dividing by the group size keeps scores comparable
    between layers whose groups have different sizes.
``l2``
    Root mean square over the group, ``sqrt(mean(w**2))``, normalised the same way.
``random``
    Uniform scores in ``[0, 1)`` drawn from a private ``torch.Generator`` seeded with ``seed``:
    a sanity baseline that any real criterion should beat. Each call draws fresh scores; the
    generator state is part of :meth:`RandomCriterion.state_dict` so a resumed run continues the
    same sequence.

A criterion is a callable ``criterion(groups: Tensor[n_groups, group_size]) -> Tensor[n_groups]``:
one row per group of the (ranking view of the) weight, one score per row, higher = kept longer.
Subclass :class:`Criterion` to keep state across a resume (``state_dict``/``load_state_dict``),
or pass any plain function. In a config it is a component: ``pruner.criterion._target_=my_pkg.MyCriterion``.

Criteria that rank from data (``taylor``, ``activation_mean``, ``apoz``, ``bn_gamma``, or your own
:class:`~framework.pruning.scores.data_criteria.DataCriterion`) live in :mod:`.data_criteria`; the
engine feeds them with the calibration pass of :mod:`.calibration`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from framework.errors import PruningError
from framework.pruning.spec import DATA_CRITERIA, criterion_problem, raise_first

# What scores groups: rows of a [n_groups, group_size] matrix -> one score per row (a Criterion is one).
ScoreFunction = Callable[[torch.Tensor], torch.Tensor]


class Criterion:
    """Base class: scores the rows of a ``[n_groups, group_size]`` matrix."""

    name: str = ""

    def __call__(self, groups: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """State needed to continue identically after a resume (none for deterministic ones)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""


class L1Criterion(Criterion):
    """Mean |w| per group."""

    name = "l1"

    def __call__(self, groups: torch.Tensor) -> torch.Tensor:
        if groups.shape[1] == 1:  # fine-grained: a reduction over one element is pure overhead
            return groups.abs().reshape(-1)
        # sum |w| without a full-size |w| temporary, then / size (= the mean)
        return torch.linalg.vector_norm(groups, ord=1, dim=1).div_(groups.shape[1])


class L2Criterion(Criterion):
    """sqrt(mean w^2) per group."""

    name = "l2"

    def __call__(self, groups: torch.Tensor) -> torch.Tensor:
        if groups.shape[1] == 1:  # sqrt(w**2) == |w|
            return groups.abs().reshape(-1)
        return groups.square().mean(dim=1).sqrt()


class RandomCriterion(Criterion):
    """Uniform random scores, reproducible from ``seed`` (a baseline, ignores the weights)."""

    name = "random"

    def __init__(self, seed: int = 0):
        # A private CPU generator: the global RNG (used by data loading, dropout...) is left alone.
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(seed))

    def __call__(self, groups: torch.Tensor) -> torch.Tensor:
        scores = torch.rand(groups.shape[0], generator=self.generator, dtype=torch.float32)
        return scores.to(groups.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator_state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "generator_state" in state:
            self.generator.set_state(state["generator_state"])


class FunctionCriterion(Criterion):
    """A plain function ``scores = f(groups)`` used as a criterion (no state)."""

    def __init__(self, function):
        self.function = function
        self.name = getattr(function, "__name__", type(function).__name__)

    def __call__(self, groups: torch.Tensor) -> torch.Tensor:
        return self.function(groups)


def build_criterion(criterion: str | ScoreFunction, seed: int = 0) -> Criterion:
    """A criterion from its name (``l1``, ``l2``, ``random`` with ``seed``) or as given: a
    :class:`Criterion` instance, or any callable ``scores = f(groups)``."""
    if isinstance(criterion, Criterion):
        return criterion
    if callable(criterion) and not isinstance(criterion, str):
        return FunctionCriterion(criterion)
    raise_first([criterion_problem(criterion)])
    if criterion == RandomCriterion.name:
        return RandomCriterion(seed)
    if criterion in DATA_CRITERIA:  # they need a calibration pass: the engine builds them
        raise PruningError(
            f"pruner.criterion={criterion} ranks from data: give it to build_pruner, or build it with "
            "framework.pruning.scores.data_criteria.build_data_criterion"
        )
    return {L1Criterion.name: L1Criterion, L2Criterion.name: L2Criterion}[criterion]()
