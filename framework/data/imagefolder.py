"""``imagefolder``: any ImageNet-style tree ``root/{train,val}/<class>/<image>``.

Validation images are resized (shorter side) and centre-cropped, training images get a random
resized crop and a horizontal flip; both are normalised. Which resize, crop, interpolation and
statistics: an :class:`~framework.data.image_transforms.ImageTransforms` (the dataset's own
ImageNet default, 87.5 % centre crop, or what the model's pretrained weights declare).
"""

from __future__ import annotations

import os

from torchvision import datasets, transforms

from framework.data.availability import check_dataset_available, require_root
from framework.data.bundle import DatasetBundle
from framework.data.image_transforms import ImageTransforms, dataset_transforms
from framework.data.preprocessing import Preprocessing
from framework.data.reading import reading
from framework.errors import DataError


def imagefolder_transforms(spec: ImageTransforms, augment: bool) -> tuple[transforms.Compose, transforms.Compose]:
    """Train and validation transforms for ``spec``."""
    interpolation = transforms.InterpolationMode(spec.interpolation)
    # No RGB conversion here: ImageFolder's default loader already converts every image to RGB.
    normalise = [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
    evaluation = [
        transforms.Resize(spec.resize_size, interpolation=interpolation),
        transforms.CenterCrop(spec.crop_size),
    ]
    augmentation = [
        transforms.RandomResizedCrop(spec.crop_size, interpolation=interpolation),
        transforms.RandomHorizontalFlip(),
    ]
    train = transforms.Compose((augmentation if augment else evaluation) + normalise)
    return train, transforms.Compose(evaluation + normalise)


def build_imagefolder(
    root: str | os.PathLike | None, image_size: int = 224, augment: bool = True, spec: ImageTransforms | None = None
) -> DatasetBundle:
    """Both splits of the tree at ``root``; classes are the sub-folder names of ``train/``.
    ``spec`` (default: the dataset's own for ``image_size``) says how images are brought to the
    model (checked by :class:`framework.data.ImageFolder`)."""
    spec = spec or dataset_transforms(image_size)
    check_dataset_available("imagefolder", root)
    folder = require_root("imagefolder", root)
    train_transform, val_transform = imagefolder_transforms(spec, augment)
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
    shape = (3, spec.crop_size, spec.crop_size)
    preprocessing = Preprocessing(
        shape, spec.mean, spec.std, pixel_scale=255.0, class_names=tuple(train.classes), resize=spec.describe()
    )
    return DatasetBundle(train, val, len(train.classes), shape, preprocessing)
