"""``digits``: scikit-learn's 1797 handwritten 8x8 digits, shipped with the library (no download).

Normalisation: pixels (0..16) are scaled to [0, 1], then standardised with the mean and standard
deviation of the training split only (one value each, the images being grey-scale), so the
validation split does not leak into the preprocessing. No augmentation: at 8x8, crops and flips
change which digit an image shows.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from framework.data.bundle import DatasetBundle
from framework.data.preprocessing import Preprocessing, digit_names
from framework.data.splits import stratified_split
from framework.errors import ConfigError

NUM_CLASSES = 10
INPUT_SHAPE = (1, 8, 8)
MAX_PIXEL = 16.0


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 images (flattened 8x8, pixel values 0..16) and their labels, as scikit-learn's
    ``load_digits(return_X_y=True)`` gives them.

    The CSV file that scikit-learn ships is read directly: importing scikit-learn costs each run about
    a second, for a 50 kB file. Where that file is not at its usual place (another scikit-learn
    layout), scikit-learn's own loader reads it."""
    found = importlib.util.find_spec("sklearn")  # locates the package without running it
    roots = found.submodule_search_locations if found is not None else None
    csv = Path(next(iter(roots)), "datasets", "data", "digits.csv.gz") if roots else None
    if csv is None or not csv.is_file():
        from sklearn.datasets import load_digits

        return load_digits(return_X_y=True)
    with gzip.open(csv, "rt") as rows:
        table = np.loadtxt(rows, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


def build_digits(seed: int = 0, val_fraction: float = 0.2) -> DatasetBundle:
    """The digits dataset as ``[1, 8, 8]`` float tensors, split by ``seed``."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction must lie strictly between 0 and 1; got {val_fraction}")
    images, labels = read_digits()
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
