"""digits: the embedded default dataset (scikit-learn's 8x8 digits), its split and scaling."""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from framework.data import Digits
from framework.data.digits import stratified_split
from framework.errors import ConfigError
from tests.support import HANG_S, ROOT

LABELS = load_digits().target


def test_bundle_shapes_and_sizes():
    bundle = Digits().load()
    assert bundle.num_classes == 10 and bundle.input_shape == (1, 8, 8)
    assert len(bundle.train) + len(bundle.val) == 1797
    assert len(bundle.val) == pytest.approx(0.2 * 1797, abs=10)
    image, label = bundle.train[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert label.dtype == torch.long


def test_split_is_disjoint_complete_and_stratified():
    train, val = stratified_split(LABELS, 0.25, seed=3)
    assert not set(train) & set(val)
    assert sorted(np.concatenate([train, val])) == list(range(len(LABELS)))
    for label in range(10):
        in_class = np.sum(LABELS == label)
        assert np.sum(LABELS[val] == label) == round(in_class * 0.25)


def test_split_is_a_function_of_the_seed():
    same = [stratified_split(LABELS, 0.2, seed=7) for _ in range(2)]
    other = stratified_split(LABELS, 0.2, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(*same))
    assert not np.array_equal(same[0][1], other[1])
    first, second = Digits(seed=7).load(), Digits(seed=7).load()
    assert torch.equal(first.val.tensors[0], second.val.tensors[0])
    assert not torch.equal(first.val.tensors[1], Digits(seed=8).load().val.tensors[1])


def test_standardised_with_training_statistics():
    bundle = Digits(seed=1).load()
    train_pixels = bundle.train.tensors[0]
    assert train_pixels.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert train_pixels.std().item() == pytest.approx(1.0, abs=1e-5)
    # Validation uses the same transform, so it is close to, not exactly, standard.
    assert abs(bundle.val.tensors[0].mean().item()) < 0.1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, 0.0001])
def test_bad_val_fraction(fraction):
    with pytest.raises(ConfigError) as info:
        Digits(val_fraction=fraction).load()
    assert "val_fraction" in str(info.value) and str(fraction) in str(info.value)
    assert "\n" not in str(info.value)


def test_the_shipped_file_read_directly_equals_scikit_learns_loader_without_importing_it():
    """The digits are read from scikit-learn's own file without importing scikit-learn (a second
    of every run); the result must be exactly what its loader gives."""
    code = (
        "import sys; from framework.data.digits import read_digits; images, labels = read_digits(); "
        "assert 'sklearn' not in sys.modules, 'scikit-learn was imported'; "
        "import numpy as np; np.save(sys.argv[1], np.concatenate([images, labels[:, None]], axis=1))"
    )
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "digits.npy"
        subprocess.run([sys.executable, "-c", code, str(saved)], check=True, cwd=ROOT, timeout=HANG_S)
        read = np.load(saved)
    images, labels = load_digits(return_X_y=True)
    assert read.shape == (1797, 65)
    assert np.array_equal(read[:, :-1], images) and np.array_equal(read[:, -1].astype(int), labels)
