"""A user's model that misbehaves on one rank only: how the distributed tests make one process of
a torchrun job fail (raise) or stall (hang) while the others go on."""

from __future__ import annotations

import os
import time

from framework.models import SimpleCNN


class RankFailingCNN(SimpleCNN):
    """SimpleCNN whose training forward number ``after_steps`` on rank ``fail_rank`` raises
    (``mode=raise``) or sleeps ``hang_s`` seconds (``mode=hang``)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        width: float = 1.0,
        fail_rank: int = 1,
        after_steps: int = 5,
        mode: str = "raise",
        hang_s: float = 600.0,
    ):
        super().__init__(num_classes=num_classes, in_channels=in_channels, width=width)
        self.fail_rank, self.after_steps, self.mode, self.hang_s = fail_rank, after_steps, mode, hang_s
        self.training_forwards = 0

    def forward(self, x):
        if self.training:
            self.training_forwards += 1
            if self.training_forwards == self.after_steps and int(os.environ.get("RANK", "0")) == self.fail_rank:
                if self.mode == "hang":
                    time.sleep(self.hang_s)
                else:
                    raise RuntimeError(f"rank {self.fail_rank} failed on purpose at step {self.after_steps}")
        return super().forward(x)
