"""Knowledge distillation (Hinton et al., 2015) as a training hook.

The loss minimised each step becomes ``(1 - alpha) · loss + alpha · T² · KL(p_T(teacher) ‖ p_T(student))``
where ``p_T`` is the softmax of the logits divided by the temperature ``T``; ``T²`` keeps the
soft term's gradients on the scale of the hard one's (Hinton et al., section 2).

The teacher is either given (a model loaded by the caller) or a frozen copy of the student taken
at the start of epoch ``snapshot_epoch`` (the caller passes the epoch its first change to the model
happens in, e.g. the first pruning epoch; this module knows nothing of pruning). Before that epoch
no teacher exists and the loss is unchanged. The teacher is kept in eval mode, without gradients,
on the run's device; it is never changed by anything done to the student later (a deep copy), and
a copy taken during the run is saved in the hook's state so that a resumed run has the same one.
Under mixed precision (``precision=bf16-mixed|16-mixed``) the teacher's forward runs under the
training step's autocast, as cheap as the student's; the soft term is computed in float32
(:func:`kd_loss`), and the teacher's logged top-1 is evaluated in float32 like every evaluation.

Logged: ``distill/teacher_top1`` (the teacher's own validation top-1, once, in the epoch the
teacher first exists) and ``distill/kd_loss`` (the mean soft term over the epoch's steps).
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from framework.errors import ConfigError
from framework.training.hooks import Hook

log = logging.getLogger(__name__)


def check_temperature(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"distill.temperature={value!r} is invalid; allowed: a finite number > 0")
    return float(value)


def check_alpha(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"distill.alpha={value!r} is invalid; allowed: a number in [0, 1]")
    return float(value)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch, in float32 at least.

    Under mixed precision both forwards run in bfloat16 or float16 and so do their logits; CPU
    autocast would keep the log-softmax in that precision (bfloat16 holds 8 significant bits),
    blurring the softened distributions the soft term compares. The term is computed outside autocast on
    float32 copies (float64 logits stay float64): a float32 run is unchanged."""
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    with torch.autocast(student_logits.device.type, enabled=False):
        log_student = F.log_softmax(student_logits.to(dtype) / temperature, dim=1)
        log_teacher = F.log_softmax(teacher_logits.to(dtype) / temperature, dim=1)
        return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, no gradients: a teacher."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


class DistillationHook(Hook):
    name = "distillation"

    def __init__(
        self,
        temperature: float = 4.0,
        alpha: float = 0.9,
        teacher: nn.Module | None = None,
        snapshot_epoch: int | None = None,
        architecture=None,
    ):
        """``architecture()`` (snapshot mode): a fresh model of the student's original shape, on
        which a resumed run loads the saved snapshot (default: a copy of the trainer's model)."""
        self.temperature = check_temperature(temperature)
        self.alpha = check_alpha(alpha)
        if (teacher is None) == (snapshot_epoch is None):
            raise ValueError("give either a teacher or the epoch at which the student is copied")
        self.teacher = freeze(teacher) if teacher is not None else None
        self.snapshot_epoch = snapshot_epoch
        self.snapshot_taken = False  # a copy made during the run (saved with the checkpoint)
        self.architecture = architecture
        self._pending_teacher: dict | None = None
        self._logged_teacher = False
        self._sum: torch.Tensor | None = None
        self._steps = 0

    # ------------------------------------------------------------------------------ the teacher
    def before_run(self, trainer) -> None:
        if self._pending_teacher is not None:
            self._restore_teacher(trainer)
        if self.teacher is not None:
            self.teacher.to(trainer.device)

    def before_epoch(self, trainer) -> None:
        self._sum, self._steps = None, 0
        if self.teacher is None and trainer.epoch >= self.snapshot_epoch:
            # the first epoch at or after the snapshot epoch (a run resumed later has it loaded)
            self.teacher = freeze(copy.deepcopy(trainer.model)).to(trainer.device)
            self.snapshot_taken = True

    # ------------------------------------------------------------------------------ each step
    def training_loss(self, trainer, loss, inputs, targets, logits):
        if self.teacher is None:
            return loss
        with torch.inference_mode():  # cheaper than no_grad: no version counters, no views tracked
            teacher_logits = self.teacher(inputs)
        # a normal tensor again (kl_div saves its target for backward; inference tensors cannot be)
        soft = kd_loss(logits, teacher_logits.clone(), self.temperature)
        detached = soft.detach()
        self._sum = detached if self._sum is None else self._sum + detached
        self._steps += 1
        return (1.0 - self.alpha) * loss + self.alpha * soft

    def after_epoch(self, trainer) -> None:
        if self._sum is not None:
            value = float(self._sum) / self._steps
            if trainer.parallel is not None:
                value = trainer.parallel.sum_across_ranks([value])[0] / trainer.parallel.context.world_size
            trainer.epoch_metrics["distill/kd_loss"] = value
        if self.teacher is not None and not self._logged_teacher:
            top1 = trainer.evaluate(self.teacher)["top1"]
            trainer.epoch_metrics["distill/teacher_top1"] = top1
            self._logged_teacher = True
            log.info("distillation: the teacher scores val/top1=%.4f (distill/teacher_top1)", top1)

    # ------------------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        state: dict[str, Any] = {"logged_teacher": self._logged_teacher, "snapshot_taken": self.snapshot_taken}
        if self.snapshot_taken and self.teacher is not None:
            state["teacher"] = {k: v.detach().cpu() for k, v in self.teacher.state_dict().items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self._logged_teacher = bool(state.get("logged_teacher", False))
        self._pending_teacher = state.get("teacher") if state.get("snapshot_taken") else None

    def _restore_teacher(self, trainer) -> None:
        # building a model draws its initial weights: from a forked RNG, so the run's stream is
        # the one of the uninterrupted run
        with torch.random.fork_rng(devices=[]):
            teacher = self.architecture() if self.architecture is not None else copy.deepcopy(trainer.model)
        try:
            teacher.load_state_dict(self._pending_teacher)
        except RuntimeError as error:
            from framework.errors import CheckpointError, short_reason

            raise CheckpointError(
                f"the checkpoint's distillation teacher does not fit the model ({short_reason(error)})"
            ) from error
        self.teacher = freeze(teacher)
        self.snapshot_taken = True
        self._pending_teacher = None
