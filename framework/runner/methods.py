"""The run's side of data-aware criteria, sparsity training and distillation.

The engine, the penalties and the distillation hook know nothing of configs or files; this module
joins them to a run: the calibration batches a data-aware criterion reads (drawn from the training
split, seeded, one shard per rank), the regularizer bound to the model and the pruner's selection,
and the teacher (``dense`` or a file of ours) for the distillation hook. Everything that can be
wrong with ``regularizer.*`` and ``distill.*`` is refused when the components are built, before any
data is read.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from framework.components import build_component
from framework.errors import ConfigError
from framework.training.distillation import DistillationHook, check_alpha, check_temperature
from framework.training.loss_terms import LossTermHook

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

    def hook(
        self, model: nn.Module, pruner, architecture: Callable[[], nn.Module], example_input: torch.Tensor
    ) -> DistillationHook:
        """The training hook: ``architecture()`` builds a fresh model like the run's (the teacher
        file's weights go into it; a resumed run rebuilds the dense snapshot on it)."""
        if self.teacher == DENSE:
            schedule = pruner.schedule if pruner is not None else None
            start = schedule.starting_epoch if schedule is not None else 0
            return DistillationHook(self.temperature, self.alpha, snapshot_epoch=start, architecture=architecture)
        from framework.models.teacher import check_teacher_outputs, load_teacher

        with torch.random.fork_rng(devices=[]):  # the teacher's throw-away init draws no run randomness
            teacher = load_teacher(architecture(), self.teacher)
        check_teacher_outputs(teacher, model, example_input, self.teacher)
        return DistillationHook(self.temperature, self.alpha, teacher=teacher)


def regularizer_hook(regularizer, model: nn.Module, pruner) -> LossTermHook | None:
    """The loss-term hook of a built regularizer component (None for ``regularizer=none``)."""
    if regularizer is None:
        return None
    return LossTermHook(regularizer.bind(model, pruner))


def build_method_hooks(cfg, model: nn.Module, pruning_hook, num_classes: int, input_shape) -> list:
    """The distillation and sparsity-penalty hooks of a training run, in the order the loop needs
    them (distillation first: its dense teacher is copied before the first pruning step changes the
    model). Built, and so checked, before any data is read."""
    pruner = pruning_hook.pruner if pruning_hook is not None else None
    hooks = []
    if cfg.get("distill"):
        kd = build_component("distill", cfg.distill)

        def architecture() -> nn.Module:  # the run's model as built, without pretrained weights
            return build_component(
                "model", cfg.model, num_classes=num_classes, in_channels=input_shape[0], input_shape=tuple(input_shape)
            )

        parameter = next(model.parameters())
        example = torch.zeros(2, *input_shape, dtype=parameter.dtype, device=parameter.device)
        hooks.append(kd.hook(model, pruner, architecture, example))
    if cfg.get("regularizer"):
        hooks.append(regularizer_hook(build_component("regularizer", cfg.regularizer), model, pruner))
    return hooks


def give_calibration_data(pruner, train_dataset, batch_size: int, seed: int, rank: int = 0) -> None:
    """Seeded training batches for a data-aware criterion (nothing happens for weight criteria)."""
    if pruner.calibration is None:
        return
    from framework.pruning.scores.calibration import seeded_batches

    pruner.set_calibration_data(seeded_batches(train_dataset, batch_size, seed, rank))
