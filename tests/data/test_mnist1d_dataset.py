"""mnist1d: generated offline by the mnist1d package, cached once as .npz, split for selection."""

import random

import numpy as np
import pytest
import torch

from framework.data import MNIST1D
from framework.data.mnist1d import CACHE_FILE, TEST_SIZE, TRAIN_SIZE, build_mnist1d, cached_arrays
from framework.errors import ConfigError


@pytest.fixture
def cache_dir(mnist1d_cache):
    return mnist1d_cache  # generated once per worker (tests/conftest.py)


def test_generated_like_the_package_and_cached_without_pickle(cache_dir):
    from mnist1d.data import get_dataset_args, make_dataset

    path = cache_dir / CACHE_FILE
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["x", "x_test", "y", "y_test"]
        assert archive["x"].shape == (TRAIN_SIZE, 40) and archive["x_test"].shape == (TEST_SIZE, 40)
        cached_first = archive["x"][:5].copy()
    reference = make_dataset(get_dataset_args())  # the package's own generator, default arguments
    assert np.allclose(cached_first, reference["x"][:5], atol=1e-6)
    assert np.bincount(np.load(path)["y"]).tolist() == np.bincount(reference["y"]).tolist()


def test_a_second_load_reads_the_cache_and_a_damaged_cache_is_generated_again(cache_dir, tmp_path):
    path = cache_dir / CACHE_FILE
    before = path.stat().st_mtime_ns
    first = cached_arrays(cache_dir)
    assert path.stat().st_mtime_ns == before  # read, not written again
    damaged = tmp_path / CACHE_FILE
    damaged.write_bytes(b"not an npz")
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.get_state()[1][:4].copy(), random.getstate())
    again = cached_arrays(tmp_path)
    assert np.array_equal(again["x"], first["x"])
    # the package's generator seeds the global generators; the run's own draws are left as they were
    assert np.array_equal(np.random.get_state()[1][:4], expected[0]) and random.getstate() == expected[1]
    with np.load(damaged, allow_pickle=False) as archive:  # replaced by a whole, readable file
        assert archive["y_test"].shape == (TEST_SIZE,)
    assert not list(tmp_path.glob("*.tmp*"))


def test_validation_is_carved_from_training_and_test_is_the_official_split(cache_dir):
    bundle = build_mnist1d(cache_dir, val_fraction=0.1, seed=3)
    assert bundle.input_shape == (1, 40) and bundle.num_classes == 10
    assert len(bundle.train) + len(bundle.val) == TRAIN_SIZE and len(bundle.test) == TEST_SIZE
    signals, labels = bundle.val.tensors
    assert signals.shape[1:] == (1, 40) and signals.dtype == torch.float32 and labels.dtype == torch.long
    counts = torch.bincount(labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 45  # stratified: about 40 of each class
    train_rows = {tuple(row.tolist()) for row in bundle.train.tensors[0][:, 0]}
    assert not any(tuple(row.tolist()) in train_rows for row in signals[:, 0])
    other = build_mnist1d(cache_dir, val_fraction=0.1, seed=4)
    assert not torch.equal(other.val.tensors[1], labels)  # the split is drawn with the seed


def test_val_fraction_zero_validates_on_the_test_signals(cache_dir):
    bundle = MNIST1D(cache_dir=str(cache_dir), val_fraction=0).load()
    assert len(bundle.train) == TRAIN_SIZE and len(bundle.val) == TEST_SIZE and bundle.test is None


@pytest.mark.parametrize("fraction", [1.0, -0.1, "0.1", True])
def test_bad_val_fraction_is_one_line_before_any_data(fraction, tmp_path):
    with pytest.raises(ConfigError) as info:
        MNIST1D(cache_dir=str(tmp_path), val_fraction=fraction)
    assert "dataset.val_fraction" in str(info.value) and "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())
