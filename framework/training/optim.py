"""Optimizers and learning-rate schedulers from plain settings."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch

from framework.errors import ConfigError


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str,
    *,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    betas: Sequence[float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    if name == "sgd":
        if nesterov and momentum <= 0:
            raise ConfigError(f"optimizer.nesterov=true needs optimizer.momentum > 0, got {momentum}")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    raise ConfigError(f"optimizer.name={name!r} is unknown; allowed: sgd | adam | adamw")


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    epochs: int,
    min_lr: float = 0.0,
    step_size: int = 10,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> Optional[torch.optim.lr_scheduler.LRScheduler]:
    """Schedulers are stepped once per epoch, after evaluation."""
    if name == "none":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
    raise ConfigError(f"lr_scheduler.name={name!r} is unknown; allowed: cosine | step | multistep | none")
