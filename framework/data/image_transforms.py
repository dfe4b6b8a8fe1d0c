"""How an image becomes a model's input: the evaluation resize and crop, the interpolation, the
per-channel statistics. A dataset of images of any size (``dataset=imagefolder``) builds its
transforms from one of these; pretrained weights declare their own (torchvision's
``weights.transforms()``, timm's pretrained config), which the dataset can take instead of its
defaults (``dataset.transforms``).

Torch-free: a model library describes its weights with it before any image is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The usual ImageNet evaluation: the shorter side resized so that the centre crop keeps 87.5 %.
CROP_FRACTION = 0.875
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
# dataset.transforms: whose preprocessing the images get
TRANSFORM_SOURCES = ("auto", "dataset", "weights")


@dataclass(frozen=True)
class ImageTransforms:
    """Evaluation: resize the shorter side to ``resize_size`` (``interpolation``), centre-crop
    ``crop_size``, scale to [0, 1], normalise with ``mean`` / ``std``. Training: a random resized
    crop of ``crop_size`` and a horizontal flip instead of the resize and crop."""

    crop_size: int
    resize_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    described_as: str = "ImageNet statistics"  # whose they are, for the run's log and preprocessing.json

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={self.interpolation!r}; allowed: {' | '.join(INTERPOLATIONS)}")

    @classmethod
    def coerce(cls, value: ImageTransforms | Mapping[str, Any]) -> ImageTransforms:
        """``value`` itself, or rebuilt from the plain dict Hydra's instantiate turns it into when
        the runner passes it to a config component."""
        if isinstance(value, ImageTransforms):
            return value
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in value.items()}
        return cls(**fields)

    def with_crop(self, crop_size: int) -> ImageTransforms:
        """The same preprocessing for another crop size, the resize keeping its ratio to the crop."""
        if crop_size == self.crop_size:
            return self
        resize = int(round(crop_size * self.resize_size / self.crop_size))
        return ImageTransforms(crop_size, resize, self.mean, self.std, self.interpolation, self.described_as)

    def describe(self) -> str:
        return (
            f"resize the shorter side to {self.resize_size} ({self.interpolation}), centre-crop "
            f"{self.crop_size}x{self.crop_size}, mean {list(self.mean)}, std {list(self.std)} ({self.described_as})"
        )


def dataset_transforms(image_size: int) -> ImageTransforms:
    """The dataset's own default: ImageNet statistics, bilinear, 87.5 % centre crop."""
    return ImageTransforms(image_size, int(round(image_size / CROP_FRACTION)))
