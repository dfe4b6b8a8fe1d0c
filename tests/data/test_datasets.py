"""Data sources describe their data (classes, input shape) before any of it is read."""

import pytest

from framework.data import Digits, Synthetic


@pytest.mark.parametrize("source", [Digits(), Synthetic(shape=(2, 5, 5), num_classes=3, train_size=8, val_size=4)])
def test_description_known_without_loading_matches_the_loaded_bundle(source):
    described = (source.num_classes, tuple(source.input_shape))
    bundle = source.load()
    assert described == (bundle.num_classes, tuple(bundle.input_shape))
    assert tuple(bundle.train[0][0].shape) == tuple(source.input_shape)
