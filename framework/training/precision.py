"""Mixed precision for the training step (``precision=32|bf16-mixed|16-mixed``, Lightning's names).

The parameters, the optimizer's state and the masks stay float32: autocast runs the forward pass
and the loss in bfloat16 or float16 where that is safe, and the backward pass follows it. float16
needs a gradient scaler (its small gradients would underflow); the scaler's state (scale, growth
tracker) is part of the checkpoint, so a resumed run scales exactly as the uninterrupted one.

Nothing else runs under autocast: evaluation, the pruner's ranking and the data criteria's
calibration pass see float32 activations (a ranking must not change with the training precision).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from framework.config import PRECISIONS
from framework.errors import ConfigError

DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def precision_problem(precision: str, device: torch.device) -> str | None:
    """One line when ``precision`` cannot run on ``device`` (float16 autocast needs CUDA)."""
    if precision not in PRECISIONS:
        return f"precision={precision!r} is invalid; allowed: {' | '.join(PRECISIONS)}"
    if precision == "16-mixed" and device.type != "cuda":
        return (
            f"precision=16-mixed needs a CUDA device (float16 with a gradient scaler); this run is on {device.type}; "
            "allowed here: precision=bf16-mixed or 32"
        )
    if precision == "bf16-mixed" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "precision=bf16-mixed: this GPU has no bfloat16; allowed: precision=16-mixed or 32"
    return None


class Precision:
    """The training step's autocast, backward and optimizer step for one precision."""

    def __init__(self, precision: str, device: torch.device) -> None:
        problem = precision_problem(precision, device)
        if problem:
            raise ConfigError(problem)
        self.name = precision
        self.device_type = device.type
        self.dtype = DTYPES.get(precision)
        # A scaler only where float16 gradients can underflow; bfloat16 has float32's range.
        self.scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None

    @property
    def mixed(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> AbstractContextManager:
        """Around the forward pass and the loss (never around evaluation or pruning)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, objective: torch.Tensor) -> None:
        (self.scaler.scale(objective) if self.scaler is not None else objective).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients at their true size, for hooks that read them before the step."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """The optimizer step; False when the scaler skipped it (infinite gradients at this scale)."""
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale

    def state_dict(self) -> dict[str, Any]:
        return {"precision": self.name, "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The scaler continues at the checkpoint's scale. A checkpoint of another precision (a
        change the resume guard already refused, or allowed with resume_changed=allow) has no
        scale for this one: the scaler then starts afresh."""
        if self.scaler is not None and state.get("precision") == self.name and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
