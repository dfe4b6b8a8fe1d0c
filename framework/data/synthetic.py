"""``synthetic``: seeded random tensors of any shape and class count, for smoke tests, benchmarks.

Each class has a random prototype and a sample is its prototype plus unit Gaussian noise, so a
model can learn the data (a smoke test can check that the loss falls) while nothing is read from
disk.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import TensorDataset

from framework.data.bundle import DatasetBundle
from framework.data.preprocessing import Preprocessing


def build_synthetic(
    shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    train_size: int = 1024,
    val_size: int = 256,
    seed: int = 0,
) -> DatasetBundle:
    """``train_size`` and ``val_size`` samples of ``shape``, labels in ``range(num_classes)``
    (arguments checked by :class:`framework.data.Synthetic`)."""
    shape = tuple(int(s) for s in shape)
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(num_classes, *shape, generator=generator)

    def draw(count: int) -> TensorDataset:
        labels = torch.randint(num_classes, (count,), generator=generator)
        noise = torch.randn(count, *shape, generator=generator)
        return TensorDataset(prototypes[labels] + noise, labels)

    return DatasetBundle(
        train=draw(train_size),
        val=draw(val_size),
        num_classes=num_classes,
        input_shape=shape,
        # the tensors are model inputs already
        preprocessing=Preprocessing(
            shape, mean=(0.0,) * shape[0], std=(1.0,) * shape[0], class_names=tuple(str(c) for c in range(num_classes))
        ),
    )
