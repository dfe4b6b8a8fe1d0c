"""How a raw input becomes what a trained model takes, written down so the model can be used
elsewhere (it is logged beside the exported model as ``preprocessing.json``).

``x = (raw / pixel_scale - mean[c]) / std[c]`` per channel ``c``, on an input already of
``input_shape`` (``resize`` says how images were brought to it, when they were).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Preprocessing:
    input_shape: tuple[int, ...]  # (C, H, W) or (C, L) the model takes
    mean: tuple[float, ...]  # per channel, after dividing by pixel_scale
    std: tuple[float, ...]
    pixel_scale: float = 1.0  # raw values are divided by this first (16 for digits, 255 for 8-bit images)
    class_names: tuple[str, ...] = ()  # output index -> class
    resize: str | None = None  # how images of another size were brought to input_shape
    layout: str = "NCHW float32"
    formula: str = field(default="x = (raw / pixel_scale - mean[c]) / std[c]", init=False)

    def apply(self, raw: torch.Tensor) -> torch.Tensor:
        """``raw`` (N, C, H, W) or (N, C, L) as the model takes it."""
        per_channel_view = (1, -1) + (1,) * (raw.dim() - 2)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(per_channel_view)
        std = torch.tensor(self.std, dtype=torch.float32).view(per_channel_view)
        return (raw.to(torch.float32) / self.pixel_scale - mean) / std

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"], data["mean"], data["std"] = list(self.input_shape), list(self.mean), list(self.std)
        data["class_names"] = list(self.class_names)
        return data


def digit_names() -> tuple[str, ...]:
    return tuple(str(d) for d in range(10))


def per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """One value per channel (a grey-scale statistic repeated)."""
    values = tuple(float(v) for v in values)
    return values * channels if len(values) == 1 else values
