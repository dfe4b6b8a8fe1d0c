"""``mnist`` through torchvision: 28x28 grey-scale digits, normalised, not augmented.

Validation is the official 10,000-image test split. torchvision reads the unpacked idx files
from ``root/MNIST/raw``.
"""

from __future__ import annotations

import os

from torchvision import datasets, transforms

from framework.data.availability import check_dataset_available, require_root
from framework.data.bundle import DatasetBundle
from framework.data.preprocessing import Preprocessing, digit_names
from framework.data.reading import reading

# Mean and standard deviation of the MNIST training pixels.
MEAN = (0.1307,)
STD = (0.3081,)
INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


def build_mnist(root: str | os.PathLike | None, download: bool = False) -> DatasetBundle:
    """MNIST from ``root/MNIST/raw``, downloaded there first if ``download``."""
    check_dataset_available("mnist", root, download)
    folder = require_root("mnist", root)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    with reading("mnist", folder, download):
        train = datasets.MNIST(folder, train=True, transform=transform, download=download)
        val = datasets.MNIST(folder, train=False, transform=transform)
    preprocessing = Preprocessing(INPUT_SHAPE, MEAN, STD, pixel_scale=255.0, class_names=digit_names())
    return DatasetBundle(train, val, NUM_CLASSES, INPUT_SHAPE, preprocessing)
