"""Datasets and data loaders.

Config components (``dataset._target_``): :class:`Digits` (embedded default), :class:`MNIST1D`
(generated offline), :class:`CIFAR10`,
:class:`MNIST`, :class:`ImageFolder`, :class:`Synthetic`; your own follows the
:class:`DataSource` interface or returns a :class:`DatasetBundle`.
"""

from framework.data.bundle import DatasetBundle
from framework.data.loaders import build_loaders, limit_batches
from framework.data.sources import (
    CIFAR10,
    MNIST,
    MNIST1D,
    DataSource,
    Digits,
    ImageFolder,
    Synthetic,
    as_data_source,
    load_splits,
)

__all__ = [
    "CIFAR10",
    "MNIST",
    "MNIST1D",
    "DataSource",
    "DatasetBundle",
    "Digits",
    "ImageFolder",
    "Synthetic",
    "as_data_source",
    "build_loaders",
    "limit_batches",
    "load_splits",
]
