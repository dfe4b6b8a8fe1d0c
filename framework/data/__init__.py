"""Datasets and data loaders: digits (embedded default), cifar10, mnist, imagefolder, synthetic."""

from framework.data.availability import DATASET_NAMES, check_dataset_available
from framework.data.bundle import DatasetBundle
from framework.data.loaders import build_loaders
from framework.data.registry import build_datasets, dataset_signature

__all__ = [
    "DATASET_NAMES",
    "DatasetBundle",
    "build_datasets",
    "build_loaders",
    "check_dataset_available",
    "dataset_signature",
]
