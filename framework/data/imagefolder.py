"""``imagefolder``: any ImageNet-style tree ``root/{train,val}/<class>/<image>``.

Training images get a random resized crop and a horizontal flip; validation images are resized so
that the centre crop keeps 87.5 % of the shorter side (256 -> 224, the usual ImageNet ratio). Both
are normalised with the ImageNet channel statistics.
"""

from __future__ import annotations

import os

from torchvision import datasets, transforms

from framework.data.availability import check_dataset_available, require_root
from framework.data.bundle import DatasetBundle
from framework.data.preprocessing import Preprocessing
from framework.data.reading import reading
from framework.errors import DataError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875


def imagefolder_transforms(image_size: int, augment: bool) -> tuple[transforms.Compose, transforms.Compose]:
    """Train and validation transforms for square ``image_size`` crops."""
    # No RGB conversion here: ImageFolder's default loader already converts every image to RGB.
    normalise = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    evaluation = [
        transforms.Resize(int(round(image_size / CROP_FRACTION))),
        transforms.CenterCrop(image_size),
    ]
    augmentation = [
        transforms.RandomResizedCrop(image_size),
        transforms.RandomHorizontalFlip(),
    ]
    train = transforms.Compose((augmentation if augment else evaluation) + normalise)
    return train, transforms.Compose(evaluation + normalise)


def build_imagefolder(root: str | os.PathLike | None, image_size: int = 224, augment: bool = True) -> DatasetBundle:
    """Both splits of the tree at ``root``; classes are the sub-folder names of ``train/``
    (``image_size`` checked by :class:`framework.data.ImageFolder`)."""
    check_dataset_available("imagefolder", root)
    folder = require_root("imagefolder", root)
    train_transform, val_transform = imagefolder_transforms(image_size, augment)
    advice = "replace the unreadable files or point dataset.root at another tree"
    with reading("imagefolder", folder, download=False, advice=advice):
        train = datasets.ImageFolder(folder / "train", transform=train_transform)
        val = datasets.ImageFolder(folder / "val", transform=val_transform)
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))[:5]
        only_val = sorted(set(val.classes) - set(train.classes))[:5]
        raise DataError(
            f"dataset imagefolder under dataset.root={folder} has different class folders in "
            f"train/ and val/ (only in train: {only_train}, only in val: {only_val}); both "
            "must hold the same class folders"
        )
    shape = (3, image_size, image_size)
    preprocessing = Preprocessing(
        shape,
        MEAN,
        STD,
        pixel_scale=255.0,
        class_names=tuple(train.classes),
        resize=f"resize the shorter side to {int(round(image_size / CROP_FRACTION))}, centre-crop {image_size}x{image_size}",
    )
    return DatasetBundle(train, val, len(train.classes), shape, preprocessing)
