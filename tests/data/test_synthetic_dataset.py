"""synthetic: seeded random tensors of any shape and class count."""

import pytest
import torch

from framework.data import Synthetic
from framework.errors import ConfigError


def test_shapes_sizes_and_labels():
    bundle = Synthetic(shape=(2, 5, 7), num_classes=4, train_size=30, val_size=12, seed=1).load()
    assert (len(bundle.train), len(bundle.val)) == (30, 12)
    assert bundle.input_shape == (2, 5, 7) and bundle.num_classes == 4
    images, labels = bundle.train.tensors
    assert images.shape == (30, 2, 5, 7)
    assert labels.min() >= 0 and labels.max() <= 3


def test_seeded():
    a, b, c = (Synthetic(train_size=8, seed=s).load() for s in (5, 5, 6))
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])


def test_classes_are_separable():
    # Samples lie nearer their own class prototype than others, so training can succeed.
    bundle = Synthetic(shape=(1, 4, 4), num_classes=3, train_size=300).load()
    images, labels = bundle.train.tensors
    means = torch.stack([images[labels == k].mean(0).flatten() for k in range(3)])
    nearest = torch.cdist(images.flatten(1), means).argmin(1)
    assert (nearest == labels).float().mean() > 0.9


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"shape": (3, 32)}, "shape="),
        ({"shape": (3, 0, 4)}, "shape="),
        ({"num_classes": 0}, "num_classes=0"),
        ({"train_size": -1}, "train_size=-1"),
    ],
)
def test_bad_options_fail_at_construction_before_any_data(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        Synthetic(**kwargs)
