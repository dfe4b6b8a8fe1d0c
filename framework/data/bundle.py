"""The result of building a dataset: both splits plus what the model builder needs to know."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from framework.data.preprocessing import Preprocessing


@dataclass(frozen=True)
class DatasetBundle:
    """Training and validation splits of one dataset.

    ``num_classes`` and ``input_shape`` (``(C, H, W)`` of one transformed sample) come from the
    dataset, so the model can be sized without loading a batch first.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    # how a raw input becomes a model input (logged with the model); None when unknown
    preprocessing: Preprocessing | None = None
