"""Cheap up-front checks that a dataset's files are present, without reading any data.

``check_dataset_available`` runs during configuration validation, before a run starts, so a
missing dataset costs a one-line :class:`DataError` rather than a failure minutes later. The
builders call the same check before handing over to torchvision, whose own errors are vaguer.
"""

from __future__ import annotations

import os
from pathlib import Path

from framework.errors import ConfigError, DataError

# Datasets that live under ``dataset.root``; the others (digits, mnist1d, synthetic) need no files.
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)
MNIST_FOLDER = os.path.join("MNIST", "raw")
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGEFOLDER_SPLITS = ("train", "val")
FILE_DATASETS = ("cifar10", "mnist", "imagefolder")
BUILTIN_DATASETS = ("digits", "mnist1d", "synthetic")
DATASET_NAMES = ("digits", "mnist1d", "cifar10", "mnist", "imagefolder", "synthetic")


def check_dataset_name(name: str) -> None:
    """Raise ConfigError unless ``name`` is a known dataset."""
    if name not in DATASET_NAMES:
        raise ConfigError(f"unknown dataset dataset.name={name!r}; allowed: {', '.join(DATASET_NAMES)}")


def require_root(name: str, root: str | os.PathLike | None) -> Path:
    """``root`` as a Path, or a ConfigError for datasets that need one and got none."""
    if root is None or str(root) == "":
        raise ConfigError(
            f"dataset {name} needs dataset.root, the folder holding its data; got "
            f"dataset.root={root!r}; set it to a folder path"
        )
    return Path(root).expanduser()


def check_dataset_available(name: str, root: str | os.PathLike | None = None, download: bool = False) -> None:
    """Raise DataError (or ConfigError for a bad name/root) if ``name`` cannot be built.

    Only looks for folders and files. With ``download`` on, cifar10 and mnist pass: whether the
    download succeeds is only known when it is tried.
    """
    check_dataset_name(name)
    if name in BUILTIN_DATASETS:
        return
    folder = require_root(name, root)
    if name == "imagefolder":
        check_imagefolder(folder)
        return
    if download:
        return
    subfolder, files = (CIFAR10_FOLDER, CIFAR10_FILES) if name == "cifar10" else (MNIST_FOLDER, MNIST_FILES)
    missing = [f for f in files if not (folder / subfolder / f).is_file()]
    if missing:
        raise DataError(
            f"dataset {name} not found under dataset.root={folder} (missing {Path(subfolder, missing[0])}"
            f"{''.join(', ' + m for m in missing[1:])}); set dataset.download=true or point dataset.root "
            f"at a folder holding {subfolder}"
        )


def check_imagefolder(folder: Path) -> None:
    """An ImageNet-style tree: ``train/`` and ``val/``, each with at least one class folder."""
    for split in IMAGEFOLDER_SPLITS:
        split_folder = folder / split
        if not split_folder.is_dir():
            problem = f"no {split}/ folder"
        elif not any(entry.is_dir() for entry in split_folder.iterdir()):
            problem = f"no class folders in {split}/"
        else:
            continue
        raise DataError(
            f"dataset imagefolder not found under dataset.root={folder} ({problem}); point "
            "dataset.root at a folder with train/ and val/ holding one sub-folder per class "
            "(dataset.download cannot fetch imagefolder data)"
        )
