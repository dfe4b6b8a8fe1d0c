"""``digits``: scikit-learn's 1797 handwritten 8x8 digits, shipped with the library (no download).

Normalisation: pixels (0..16) are scaled to [0, 1], then standardised with the mean and standard
deviation of the training split only (one value each, the images being grey-scale), so the
validation split does not leak into the preprocessing. No augmentation: at 8x8, crops and flips
change which digit an image shows.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from framework.data.bundle import DatasetBundle
from framework.data.preprocessing import Preprocessing, digit_names
from framework.data.splits import stratified_split
from framework.errors import ConfigError

NUM_CLASSES = 10
INPUT_SHAPE = (1, 8, 8)
MAX_PIXEL = 16.0


def build_digits(seed: int = 0, val_fraction: float = 0.2) -> DatasetBundle:
    """The digits dataset as ``[1, 8, 8]`` float tensors, split by ``seed``."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction must lie strictly between 0 and 1; got {val_fraction}")
    images, labels = load_digits(return_X_y=True)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError(
            f"dataset.val_fraction={val_fraction} leaves an empty split of digits' "
            f"{len(labels)} images; use a value such as 0.2"
        )
    pixels = torch.as_tensor(images, dtype=torch.float32).view(-1, *INPUT_SHAPE) / MAX_PIXEL
    targets = torch.as_tensor(labels, dtype=torch.long)
    train_pixels = pixels[train_idx]
    mean, std = train_pixels.mean(), train_pixels.std()
    pixels = (pixels - mean) / std
    return DatasetBundle(
        train=TensorDataset(pixels[train_idx], targets[train_idx]),
        val=TensorDataset(pixels[val_idx], targets[val_idx]),
        num_classes=NUM_CLASSES,
        input_shape=INPUT_SHAPE,
        preprocessing=Preprocessing(
            INPUT_SHAPE, mean=(float(mean),), std=(float(std),), pixel_scale=MAX_PIXEL, class_names=digit_names()
        ),
    )
