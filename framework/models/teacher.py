"""Loading a distillation teacher (``distill.teacher=<file>``): any checkpoint or thinned model
this project wrote, read without pickle, checked before any data is read.

The same reader as ``pretrained=`` (:mod:`.pretrained`), so a checkpoint, a plain ``state_dict``
and a thinned model (resized with its recipe first) are all accepted, and every failure is one
line; the messages name ``distill.teacher`` instead of ``pretrained``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from torch import nn

from framework.errors import CheckpointError
from framework.models import pretrained

KEY = "distill.teacher"


@contextmanager
def _as_teacher():
    try:
        yield
    except CheckpointError as error:
        message = str(error).replace(f"{pretrained.KEY} file", f"{KEY} file").replace(f"{pretrained.KEY}=", f"{KEY}=")
        message = message.replace(f"{pretrained.KEY} path", f"{KEY} path")
        raise CheckpointError(message) from None


def check_teacher_file(path: str | os.PathLike) -> None:
    """Exists, is a complete file written by torch.save (reads a few bytes only)."""
    with _as_teacher():
        pretrained.check_pretrained_file(path)


def load_teacher(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """``model`` (a freshly built architecture) with the teacher's weights: strict, weights only."""
    with _as_teacher():
        teacher = pretrained.load_pretrained(model, path)
    broken = [
        name for name, value in teacher.state_dict().items() if value.is_floating_point() and not value.isfinite().all()
    ]
    if broken:
        # a teacher whose outputs are NaN makes the loss NaN at the first step, blamed on the lr
        raise CheckpointError(
            f"{KEY}={path} holds NaN or infinite weights ({pretrained.summarise(broken)}); "
            "a teacher must be a trained model: give a checkpoint of a run that finished (checkpoints/best.pt)"
        )
    return teacher


@torch.no_grad()
def check_teacher_outputs(teacher: nn.Module, student: nn.Module, example_input: torch.Tensor, path) -> None:
    """The teacher must give as many outputs (classes) as the student."""
    was = teacher.training, student.training
    teacher.eval()
    student.eval()
    try:
        got, want = teacher(example_input).shape[-1], student(example_input).shape[-1]
    finally:
        teacher.train(was[0])
        student.train(was[1])
    if got != want:
        raise CheckpointError(
            f"{KEY}={path} gives {got} outputs but the model gives {want}; "
            "the teacher must be trained on the same classes"
        )
