"""``synthetic``: seeded random tensors of any shape and class count, for smoke tests, benchmarks.

Each class has a random prototype and a sample is its prototype plus unit Gaussian noise, so a
model can learn the data (a smoke test can check that the loss falls) while nothing is read from
disk.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from framework.data.bundle import DatasetBundle
from framework.data.preprocessing import Preprocessing
from framework.errors import ConfigError


def check_positive(key: str, value: object) -> int:
    """``value`` as a positive int, or a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer; got {value!r}")
    return value


def build_synthetic(
    shape: tuple[int, int, int] | list[int] = (3, 32, 32),
    num_classes: int = 10,
    train_size: int = 1024,
    val_size: int = 256,
    seed: int = 0,
) -> DatasetBundle:
    """``train_size`` and ``val_size`` samples of ``shape``, labels in ``range(num_classes)``."""
    shape = tuple(shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ConfigError(
            f"dataset.shape must be three positive integers (C, H, W); got {list(shape)}"
        )
    check_positive("dataset.num_classes", num_classes)
    check_positive("dataset.train_size", train_size)
    check_positive("dataset.val_size", val_size)
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(num_classes, *shape, generator=generator)

    def draw(count: int) -> TensorDataset:
        labels = torch.randint(num_classes, (count,), generator=generator)
        noise = torch.randn(count, *shape, generator=generator)
        return TensorDataset(prototypes[labels] + noise, labels)

    return DatasetBundle(
        train=draw(train_size), val=draw(val_size), num_classes=num_classes, input_shape=shape,
        # the tensors are model inputs already
        preprocessing=Preprocessing(shape, mean=(0.0,) * shape[0], std=(1.0,) * shape[0],
                                    class_names=tuple(str(c) for c in range(num_classes))),
    )
