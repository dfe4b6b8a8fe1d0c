"""``cifar10`` through torchvision, with the standard augmentation and normalisation.

Validation is the official 10,000-image test split; with ``val_fraction`` > 0 it is that share
of the 50,000 training images instead (stratified, drawn with ``seed``, without augmentation),
and the official split becomes the test split, reported and never selected on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from torchvision import datasets, transforms
from torchvision.datasets.vision import VisionDataset

from framework.data.availability import check_dataset_available, require_root
from framework.data.bundle import DatasetBundle
from framework.data.preprocessing import Preprocessing
from framework.data.reading import reading
from framework.data.safe_pickle import load_data_pickle
from framework.errors import DataError

# Per-channel mean and standard deviation of the CIFAR-10 training images.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
ADVICE = "delete the damaged files and set dataset.download=true"


class SafeCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10, checking that the batch files exist rather than their MD5 sums, and
    reading them with a restricted unpickler.

    torchvision hashes all 178 MB on every construction (twice per run: train and test), then
    unpickles the batches with ``pickle.load``, which runs whatever a tampered file names. Here
    the batches are read by :func:`~framework.data.safe_pickle.load_data_pickle`, which admits
    only plain data and numpy arrays, so no file can run code, hashed or not. A download is still
    verified, since the archive's own checksum (``tgz_md5``) is kept; a damaged or tampered batch
    file is a one-line DataError naming it.
    """

    train_list = [[file, None] for file, _ in datasets.CIFAR10.train_list]
    test_list = [[file, None] for file, _ in datasets.CIFAR10.test_list]
    meta = {**datasets.CIFAR10.meta, "md5": None}

    def __init__(self, root, train: bool = True, transform=None, target_transform=None, download: bool = False) -> None:
        # torchvision's __init__ would unpickle the files itself: only the base class's is run.
        VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
        self.train = train
        if download:
            self.download()
        folder = Path(self.root) / self.base_folder
        images, self.targets = [], []
        for file_name, _ in self.train_list if train else self.test_list:
            data, labels = read_cifar_batch(folder / file_name)
            images.append(data)
            self.targets.extend(labels)
        # (N, 3072) rows of R, G, B planes -> (N, 32, 32, 3), as torchvision keeps them.
        self.data = np.vstack(images).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
        meta = load_data_pickle(folder / self.meta["filename"], "cifar10", ADVICE)
        names = meta.get(self.meta["key"]) if isinstance(meta, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(
                f"dataset cifar10: {folder / self.meta['filename']} has no list of class names "
                f"under {self.meta['key']!r}; {ADVICE}"
            )
        self.classes = names
        self.class_to_idx = {name: index for index, name in enumerate(names)}


def read_cifar_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """``(data, labels)`` of one batch file: uint8 rows of 3072 pixels and as many int labels."""
    entry = load_data_pickle(path, "cifar10", ADVICE)
    data = entry.get("data") if isinstance(entry, dict) else None
    labels = entry.get("labels", entry.get("fine_labels")) if isinstance(entry, dict) else None
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
        or not isinstance(labels, list)
        or len(labels) != len(data)
        or not all(isinstance(label, int) and 0 <= label < NUM_CLASSES for label in labels)
    ):
        raise DataError(
            f"dataset cifar10: {path} is not a CIFAR-10 batch (needs 'data': uint8 array of "
            f"shape (N, 3072) and 'labels': N ints in 0..9); {ADVICE}"
        )
    return data, labels


def cifar10_transforms(augment: bool) -> tuple[transforms.Compose, transforms.Compose]:
    """Train and validation transforms: random 4-pixel-padded crop and flip for training."""
    normalise = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    augmentation = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    train = transforms.Compose((augmentation if augment else []) + normalise)
    return train, transforms.Compose(normalise)


class TransformedSubset(Dataset):
    """The images ``indices`` of a dataset read without a transform, through ``transform``: the
    training images split into a training part (augmented) and a validation part (not)."""

    def __init__(self, dataset: SafeCIFAR10, indices: np.ndarray, transform) -> None:
        self.dataset, self.indices, self.transform = dataset, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image, target = self.dataset[int(self.indices[index])]
        return self.transform(image), target


def build_cifar10(
    root: str | os.PathLike | None,
    download: bool = False,
    augment: bool = True,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> DatasetBundle:
    """CIFAR-10 from ``root/cifar-10-batches-py``, downloaded there first if ``download``."""
    from framework.data.splits import stratified_split

    check_dataset_available("cifar10", root, download)
    folder = require_root("cifar10", root)
    train_transform, val_transform = cifar10_transforms(augment)
    with reading("cifar10", folder, download):
        test = SafeCIFAR10(folder, train=False, transform=val_transform, download=download)
        if val_fraction > 0:
            images = SafeCIFAR10(folder, train=True)
        else:
            train = SafeCIFAR10(folder, train=True, transform=train_transform)
    preprocessing = Preprocessing(INPUT_SHAPE, MEAN, STD, pixel_scale=255.0, class_names=tuple(test.classes))
    if val_fraction <= 0:
        return DatasetBundle(train, test, NUM_CLASSES, INPUT_SHAPE, preprocessing)
    train_idx, val_idx = stratified_split(np.asarray(images.targets), val_fraction, seed)
    return DatasetBundle(
        TransformedSubset(images, train_idx, train_transform),
        TransformedSubset(images, val_idx, val_transform),
        NUM_CLASSES,
        INPUT_SHAPE,
        preprocessing,
        test=test,
    )
