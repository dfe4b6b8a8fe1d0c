"""``build_datasets``: one entry point from plain arguments (mapped from the Hydra config)."""

from __future__ import annotations

import os

from framework.data import cifar, digits, mnist
from framework.data.availability import check_dataset_name, require_root
from framework.data.bundle import DatasetBundle
from framework.data.cifar import build_cifar10
from framework.data.digits import build_digits
from framework.data.imagefolder import build_imagefolder
from framework.data.mnist import build_mnist
from framework.data.synthetic import build_synthetic


def build_datasets(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.2,
    augment: bool = True,
    shape: tuple[int, int, int] | list[int] = (3, 32, 32),
    num_classes: int = 10,
    train_size: int = 1024,
    val_size: int = 256,
    image_size: int = 224,
) -> DatasetBundle:
    """Build the training and validation splits of dataset ``name``.

    Which arguments a dataset reads:

    - ``digits``: ``seed`` and ``val_fraction`` (its split); no files, no augmentation.
    - ``cifar10``: ``root``, ``download``, ``augment``; validation is the official test split.
    - ``mnist``: ``root``, ``download``; validation is the official test split.
    - ``imagefolder``: ``root`` (with ``train/`` and ``val/``), ``image_size``, ``augment``.
    - ``synthetic``: ``shape``, ``num_classes``, ``train_size``, ``val_size``, ``seed``.

    The others are ignored, so one config schema serves every dataset.
    """
    check_dataset_name(name)
    if name == "digits":
        return build_digits(seed=seed, val_fraction=val_fraction)
    if name == "cifar10":
        return build_cifar10(root, download=download, augment=augment)
    if name == "mnist":
        return build_mnist(root, download=download)
    if name == "imagefolder":
        return build_imagefolder(root, image_size=image_size, augment=augment)
    return build_synthetic(
        shape=shape, num_classes=num_classes, train_size=train_size, val_size=val_size, seed=seed
    )


# Datasets whose module states their class count and image shape.
_FIXED_SIGNATURES = {"digits": digits, "mnist": mnist, "cifar10": cifar}


def dataset_signature(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    shape: tuple[int, int, int] | list[int] = (3, 32, 32),
    num_classes: int = 10,
    image_size: int = 224,
) -> tuple[int, tuple[int, ...]]:
    """``(num_classes, (C, H, W))`` of dataset ``name`` without reading its data, so the model can
    be built (and pruning patterns checked) before any data is loaded. Arguments as in
    :func:`build_datasets`; for ``imagefolder`` the classes are the sub-folders of ``root/train``,
    which :func:`~framework.data.check_dataset_available` has already found."""
    check_dataset_name(name)
    if name in _FIXED_SIGNATURES:
        module = _FIXED_SIGNATURES[name]
        return module.NUM_CLASSES, module.INPUT_SHAPE
    if name == "synthetic":
        return int(num_classes), tuple(int(s) for s in shape)
    classes = [p for p in (require_root(name, root) / "train").iterdir() if p.is_dir()]
    return len(classes), (3, int(image_size), int(image_size))
