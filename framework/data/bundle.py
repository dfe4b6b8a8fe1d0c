"""The result of building a dataset: both splits plus what the model builder needs to know."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from framework.data.preprocessing import Preprocessing


@dataclass(frozen=True)
class DatasetBundle:
    """Training and validation splits of one dataset (and a test split, when it has one).

    ``num_classes`` and ``input_shape`` (``(C, H, W)`` of one transformed image, ``(C, L)`` of a
    1-D signal) come from the dataset, so the model can be sized without loading a batch first.
    ``test``: a split that is reported and never selected on (best.pt and a sweeper follow the
    validation split); None when validation is the dataset's test split itself.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    # how a raw input becomes a model input (logged with the model); None when unknown
    preprocessing: Preprocessing | None = None
    test: Dataset | None = None
