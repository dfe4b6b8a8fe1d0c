"""cifar10 with dataset.val_fraction: validation carved from the training images (not augmented),
the official test split kept apart as the test split."""

import pytest
from test_file_datasets import CIFAR_PER_BATCH, write_cifar10

from framework.data import CIFAR10
from framework.errors import ConfigError


def test_validation_is_carved_from_training_and_the_official_split_is_the_test_split(tmp_path):
    write_cifar10(tmp_path)
    bundle = CIFAR10(root=str(tmp_path), val_fraction=0.4, seed=1).load()
    assert len(bundle.train) + len(bundle.val) == 5 * CIFAR_PER_BATCH and len(bundle.val) == 6  # 2 of 5 per class
    assert len(bundle.test) == CIFAR_PER_BATCH
    train_values = {round(float(bundle.train[i][0][0, 16, 16]), 4) for i in range(len(bundle.train))}
    val_values = {round(float(bundle.val[i][0][0, 16, 16]), 4) for i in range(len(bundle.val))}
    assert not train_values & val_values  # the uniform images are told apart by their value
    assert bundle.val[0][0].shape == (3, 32, 32)
    assert sorted(bundle.val[i][1] for i in range(6)) == [0, 0, 1, 1, 2, 2]  # stratified
    assert bundle.val.transform is not bundle.train.transform  # validation is never augmented
    default = CIFAR10(root=str(tmp_path)).load()
    assert default.test is None and len(default.val) == CIFAR_PER_BATCH  # as before: validation is the test split


@pytest.mark.parametrize("fraction", [1.0, -0.1, True])
def test_bad_val_fraction_is_one_line(fraction):
    with pytest.raises(ConfigError) as error:
        CIFAR10(root="x", val_fraction=fraction)
    assert "dataset.val_fraction" in str(error.value) and "\n" not in str(error.value)
