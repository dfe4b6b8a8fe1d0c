"""``cifar10`` through torchvision, with the standard augmentation and normalisation.

Validation is the official 10,000-image test split.
"""

from __future__ import annotations

import os

from torchvision import datasets, transforms

from framework.data.availability import check_dataset_available, require_root
from framework.data.bundle import DatasetBundle
from framework.data.preprocessing import Preprocessing
from framework.data.reading import reading

# Per-channel mean and standard deviation of the CIFAR-10 training images.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10


class PresenceCheckedCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10, checking that the batch files exist rather than their MD5 sums.

    torchvision hashes all 178 MB on every construction (twice per run: train and test). A
    download is still verified, since the archive's own checksum (``tgz_md5``) is kept; a damaged
    batch file still fails, when it is unpickled, and becomes a DataError.
    """

    train_list = [[file, None] for file, _ in datasets.CIFAR10.train_list]
    test_list = [[file, None] for file, _ in datasets.CIFAR10.test_list]
    meta = {**datasets.CIFAR10.meta, "md5": None}


def cifar10_transforms(augment: bool) -> tuple[transforms.Compose, transforms.Compose]:
    """Train and validation transforms: random 4-pixel-padded crop and flip for training."""
    normalise = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    augmentation = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    train = transforms.Compose((augmentation if augment else []) + normalise)
    return train, transforms.Compose(normalise)


def build_cifar10(
    root: str | os.PathLike | None, download: bool = False, augment: bool = True
) -> DatasetBundle:
    """CIFAR-10 from ``root/cifar-10-batches-py``, downloaded there first if ``download``."""
    check_dataset_available("cifar10", root, download)
    folder = require_root("cifar10", root)
    train_transform, val_transform = cifar10_transforms(augment)
    with reading("cifar10", folder, download):
        train = PresenceCheckedCIFAR10(
            folder, train=True, transform=train_transform, download=download
        )
        val = PresenceCheckedCIFAR10(folder, train=False, transform=val_transform)
    preprocessing = Preprocessing(INPUT_SHAPE, MEAN, STD, pixel_scale=255.0, class_names=tuple(val.classes))
    return DatasetBundle(train, val, NUM_CLASSES, INPUT_SHAPE, preprocessing)
