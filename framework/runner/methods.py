"""The run's side of data-aware criteria, sparsity training and distillation.

The engine, the penalties and the distillation hook know nothing of configs or files; this module
joins them to a run: the calibration batches a data-aware criterion reads (drawn from the training
split, seeded, one shard per rank), and the teacher (``dense`` or a file of ours) for the
distillation hook (built with the others by :func:`framework.runner.hooks.build_hooks`).
Everything that can be wrong with ``regularizer.*`` and ``distill.*`` is refused when the
components are built, before any data is read.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from framework.errors import ConfigError
from framework.training.distillation import check_alpha, check_temperature

DENSE = "dense"


class KnowledgeDistillation:
    """``distill=kd``: Hinton et al. (2015) with ``temperature``, ``alpha`` and a ``teacher``
    (``dense`` or the path of a checkpoint or thinned model of this project)."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, teacher: str = DENSE):
        self.temperature = check_temperature(temperature)
        self.alpha = check_alpha(alpha)
        if not isinstance(teacher, str) or not teacher:
            raise ConfigError(f"distill.teacher={teacher!r} is invalid; allowed: dense or the path of a checkpoint")
        if teacher != DENSE:
            from framework.models.teacher import check_teacher_file

            check_teacher_file(teacher)
        self.teacher = teacher

    def teacher_model(
        self, model: nn.Module, architecture: Callable[[], nn.Module], example_input: torch.Tensor
    ) -> nn.Module | None:
        """The teacher file's model, checked against the student's outputs on ``example_input``;
        None for ``teacher=dense`` (a copy of the student taken at the first pruning epoch).
        ``architecture()`` builds a fresh model like the run's, into which the file's weights go."""
        if self.teacher == DENSE:
            return None
        from framework.models.teacher import check_teacher_outputs, load_teacher

        with torch.random.fork_rng(devices=[]):  # the teacher's throw-away init draws no run randomness
            teacher = load_teacher(architecture(), self.teacher)
        check_teacher_outputs(teacher, model, example_input, self.teacher)
        return teacher


def give_calibration_data(pruner, train_dataset, batch_size: int, seed: int, rank: int = 0) -> None:
    """Seeded training batches for a data-aware criterion (nothing happens for weight criteria)."""
    if pruner is None or pruner.calibration is None:
        return
    from framework.pruning.scores.calibration import seeded_batches

    pruner.set_calibration_data(seeded_batches(train_dataset, batch_size, seed, rank))
