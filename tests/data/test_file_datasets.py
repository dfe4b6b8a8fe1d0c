"""cifar10, mnist and imagefolder on tiny fake copies the tests write in the real file formats."""

import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from framework.data import CIFAR10, MNIST, ImageFolder
from framework.data.availability import check_dataset_available
from framework.data.cifar import MEAN as CIFAR_MEAN
from framework.data.cifar import STD as CIFAR_STD
from framework.errors import ConfigError, DataError

CIFAR_PER_BATCH = 3


def write_cifar10(root):
    """``root/cifar-10-batches-py`` as the Python pickles of the real archive, 3 images a batch.

    Image ``i`` of a batch is filled with the value ``10 * batch + i`` and labelled ``i``.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    for batch, name in enumerate(names):
        values = [10 * batch + i for i in range(CIFAR_PER_BATCH)]
        entry = {
            "batch_label": name,
            "labels": list(range(CIFAR_PER_BATCH)),
            "data": np.repeat(np.array(values, dtype=np.uint8)[:, None], 3072, axis=1),
            "filenames": [f"{name}_{i}.png" for i in range(CIFAR_PER_BATCH)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "num_cases_per_batch": CIFAR_PER_BATCH,
        "num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_idx(path, array):
    """An unsigned-byte idx file: magic 0x0000 08 <ndim>, big-endian sizes, then the bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, train=5, test=2):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", train), ("t10k", test)):
        images = np.stack([np.full((28, 28), 20 * i) for i in range(count)])
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    return raw


def write_imagefolder(root, train_classes=("cat", "dog"), val_classes=("cat", "dog")):
    for split, classes in (("train", train_classes), ("val", val_classes)):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                colour = (40 * index, 100, 20 * i)
                Image.new("RGB", (20, 14), colour).save(folder / f"{i}.png")
    return root


def one_line(error_info) -> str:
    message = str(error_info.value)
    assert "\n" not in message
    return message


# --- cifar10 ---------------------------------------------------------------------------------


def test_cifar10_reads_the_real_pickle_format(tmp_path):
    write_cifar10(tmp_path)
    check_dataset_available("cifar10", tmp_path, download=False)
    bundle = CIFAR10(root=tmp_path, augment=False).load()
    assert (len(bundle.train), len(bundle.val)) == (5 * CIFAR_PER_BATCH, CIFAR_PER_BATCH)
    assert bundle.num_classes == 10 and bundle.input_shape == (3, 32, 32)
    image, label = bundle.train[4]  # second batch, second image: value 11, label 1
    assert image.shape == (3, 32, 32) and label == 1
    expected = (11 / 255 - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD)
    assert torch.allclose(image[:, 5, 5], expected, atol=1e-5)
    val_image, val_label = bundle.val[2]  # test batch is the sixth: value 52
    assert val_label == 2
    expected = (52 / 255 - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD)
    assert torch.allclose(val_image[:, 0, 0], expected, atol=1e-5)
    assert bundle.train.classes[0] == "airplane"


def test_cifar10_augmentation_pads_and_crops_training_images_only(tmp_path):
    write_cifar10(tmp_path)
    padding = ((0 - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD))[:, None, None]

    def shows_padding(image):  # the images are uniform and non-zero, so zeros come from padding
        return bool(torch.isclose(image, padding.expand_as(image), atol=1e-5).all(0).any())

    torch.manual_seed(0)
    augmented = CIFAR10(root=tmp_path, augment=True).load()
    crops = [augmented.train[1][0] for _ in range(20)]
    assert all(crop.shape == (3, 32, 32) for crop in crops)
    assert sum(map(shows_padding, crops)) >= 10  # a crop shows no padding only at offset (4, 4)
    assert not any(shows_padding(augmented.val[1][0]) for _ in range(20))
    plain = CIFAR10(root=tmp_path, augment=False).load()
    assert not any(shows_padding(plain.train[1][0]) for _ in range(20))


def test_cifar10_missing_names_root_and_download(tmp_path):
    with pytest.raises(DataError) as info:
        check_dataset_available("cifar10", tmp_path / "data", download=False)
    message = one_line(info)
    assert f"dataset.root={tmp_path / 'data'}" in message
    assert "dataset.download=true" in message and "cifar-10-batches-py" in message
    with pytest.raises(DataError) as again:
        CIFAR10(root=tmp_path / "data").load()
    assert str(again.value) == message


def test_cifar10_partial_copy_names_the_missing_file(tmp_path):
    (write_cifar10(tmp_path) / "data_batch_3").unlink()
    with pytest.raises(DataError) as info:
        CIFAR10(root=tmp_path).load()
    assert "data_batch_3" in one_line(info)


def test_cifar10_damaged_file_is_a_one_line_error(tmp_path):
    (write_cifar10(tmp_path) / "data_batch_2").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError) as info:
        CIFAR10(root=tmp_path).load()
    message = one_line(info)
    assert "cannot be read" in message and "dataset.download=true" in message


def test_download_on_passes_the_cheap_check_without_network(tmp_path):
    check_dataset_available("cifar10", tmp_path, download=True)
    check_dataset_available("mnist", tmp_path, download=True)


@pytest.mark.parametrize("name", ["cifar10", "mnist", "imagefolder"])
def test_file_datasets_need_a_root(name):
    with pytest.raises(ConfigError) as info:
        check_dataset_available(name, None)
    assert "dataset.root=None" in one_line(info)


# --- mnist -----------------------------------------------------------------------------------


def test_mnist_reads_raw_idx_files(tmp_path):
    write_mnist(tmp_path, train=5, test=2)
    bundle = MNIST(root=tmp_path).load()
    assert (len(bundle.train), len(bundle.val)) == (5, 2)
    assert bundle.num_classes == 10 and bundle.input_shape == (1, 28, 28)
    image, label = bundle.train[3]
    assert image.shape == (1, 28, 28) and label == 3
    assert torch.allclose(image, torch.full((1, 28, 28), (60 / 255 - 0.1307) / 0.3081), atol=1e-5)


def test_mnist_missing_names_root_and_download(tmp_path):
    raw = write_mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as info:
        MNIST(root=tmp_path).load()
    message = one_line(info)
    assert f"dataset.root={tmp_path}" in message and "dataset.download=true" in message
    assert "t10k-labels-idx1-ubyte" in message


# --- imagefolder -----------------------------------------------------------------------------


def test_imagefolder_tree(tmp_path):
    classes = ("cat", "dog", "fox")
    write_imagefolder(tmp_path, train_classes=classes, val_classes=classes)
    bundle = ImageFolder(root=tmp_path, image_size=12).load()
    assert bundle.num_classes == 3 and bundle.input_shape == (3, 12, 12)
    assert (len(bundle.train), len(bundle.val)) == (6, 6)
    image, label = bundle.val[2]  # dog, first image: colour (40, 100, 0)
    assert image.shape == (3, 12, 12) and label == 1
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = (torch.tensor([40, 100, 0]) / 255 - mean) / std
    assert torch.allclose(image[:, 6, 6], expected, atol=1e-2)
    assert bundle.train[0][0].shape == (3, 12, 12)


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda root: None, "no train/ folder"),
        (lambda root: (root / "train" / "cat").mkdir(parents=True), "no val/ folder"),
        (lambda root: [(root / s).mkdir() for s in ("train", "val")], "no class folders in train/"),
    ],
)
def test_imagefolder_missing_parts(tmp_path, make, problem):
    make(tmp_path)
    with pytest.raises(DataError) as info:
        ImageFolder(root=tmp_path).load()
    message = one_line(info)
    assert problem in message and f"dataset.root={tmp_path}" in message
    assert "dataset.download" in message


def test_imagefolder_class_folders_must_match(tmp_path):
    write_imagefolder(tmp_path, train_classes=("cat", "dog"), val_classes=("cat", "eel"))
    with pytest.raises(DataError) as info:
        ImageFolder(root=tmp_path, image_size=8).load()
    assert "only in train: ['dog'], only in val: ['eel']" in one_line(info)


def test_imagefolder_without_images_is_a_one_line_error(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "cat").mkdir(parents=True)
    with pytest.raises(DataError) as info:
        ImageFolder(root=tmp_path).load()
    assert "cannot be read" in one_line(info)
