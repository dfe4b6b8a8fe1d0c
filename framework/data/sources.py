"""Data sources: what a run needs from a dataset, in two steps.

A run builds its model (and checks pruning patterns, BN folding, the tracking store) before it
reads any data, so a dataset is described first and loaded later:

* ``num_classes`` and ``input_shape`` (``(C, H, W)`` of one transformed image, ``(C, L)`` of a
  1-D signal), known without reading the data;
* ``check()``: cheap checks that the files are there (no data is read); optional;
* ``load()``: the training and validation splits, as a :class:`DatasetBundle` or a
  ``(train, val)`` pair of ``torch.utils.data.Dataset``.

The built-in sources below are config components (``dataset._target_``). Your own dataset is a
class with that interface (subclassing :class:`DataSource` is optional), or a function that
returns a :class:`DatasetBundle` (its data is then read when the config is instantiated).
Arguments are checked when a source is constructed, so a bad value fails before any data is read.
Heavy imports (torchvision, scikit-learn) happen in ``load()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from framework.data.availability import check_dataset_available, require_root
from framework.data.bundle import DatasetBundle
from framework.data.image_transforms import TRANSFORM_SOURCES, ImageTransforms, dataset_transforms
from framework.errors import ConfigError

# imagefolder's crop when neither the config nor the model's weights give one
DEFAULT_IMAGE_SIZE = 224


class DataSource:
    """Base class of the built-in sources; documents the interface a run relies on."""

    num_classes: int
    input_shape: tuple[int, ...]

    def check(self) -> None:
        """Raise a one-line error if the data cannot be loaded (files missing); reads no data."""

    def load(self) -> DatasetBundle:
        raise NotImplementedError


def _positive_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} is invalid; allowed: an integer >= 1")
    return value


class Digits(DataSource):
    """scikit-learn's 1797 8x8 handwritten digits, embedded (nothing to download); a stratified
    split of ``val_fraction`` drawn with ``seed``."""

    num_classes = 10
    input_shape = (1, 8, 8)

    def __init__(self, val_fraction: float = 0.2, seed: int = 0) -> None:
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction={val_fraction!r} is invalid; allowed: a number in (0, 1)")
        self.val_fraction = float(val_fraction)
        self.seed = seed

    def load(self) -> DatasetBundle:
        from framework.data.digits import build_digits

        return build_digits(seed=self.seed, val_fraction=self.val_fraction)


class MNIST1D(DataSource):
    """MNIST-1D: 4,000 training and 1,000 test signals of length 40, generated offline by the
    ``mnist1d`` package and cached in ``cache_dir``; ``val_fraction`` of the training signals
    (stratified, drawn with ``seed``) is the validation split, the 1,000 the test split
    (``val_fraction=0``: validation on the test signals, the published baselines' protocol)."""

    num_classes = 10
    input_shape = (1, 40)

    def __init__(self, cache_dir: str | None = None, val_fraction: float = 0.1, seed: int = 0) -> None:
        if (
            isinstance(val_fraction, bool)
            or not isinstance(val_fraction, (int, float))
            or not 0.0 <= val_fraction < 1.0
        ):
            raise ConfigError(
                f"dataset.val_fraction={val_fraction!r} is invalid; allowed: a number in [0, 1) "
                "(0: validate on the test split)"
            )
        if not cache_dir:
            raise ConfigError(
                f"dataset.cache_dir={cache_dir!r} is invalid; allowed: a folder path for the generated data"
            )
        self.cache_dir, self.val_fraction, self.seed = str(cache_dir), float(val_fraction), seed

    def load(self) -> DatasetBundle:
        from framework.data.mnist1d import build_mnist1d

        return build_mnist1d(self.cache_dir, val_fraction=self.val_fraction, seed=self.seed)


class CIFAR10(DataSource):
    """CIFAR-10 from ``root/cifar-10-batches-py`` (downloaded there first with ``download``);
    validation is the official test split, or with ``val_fraction`` > 0 that share of the
    training images (stratified, drawn with ``seed``; the official split is then the test split);
    ``augment``: random crop and flip for training."""

    num_classes = 10
    input_shape = (3, 32, 32)

    def __init__(
        self,
        root: str | None = None,
        download: bool = False,
        augment: bool = True,
        val_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
            raise ConfigError(
                f"dataset.val_fraction={val_fraction!r} is invalid; allowed: a number in [0, 1) "
                "(0: validate on the official test split)"
            )
        self.root, self.download, self.augment = root, download, augment
        self.val_fraction, self.seed = float(val_fraction), seed

    def check(self) -> None:
        check_dataset_available("cifar10", self.root, self.download)

    def load(self) -> DatasetBundle:
        from framework.data.cifar import build_cifar10

        return build_cifar10(
            self.root, download=self.download, augment=self.augment, val_fraction=self.val_fraction, seed=self.seed
        )


class MNIST(DataSource):
    """MNIST from ``root/MNIST/raw`` (downloaded there first with ``download``); validation is the
    official test split."""

    num_classes = 10
    input_shape = (1, 28, 28)

    def __init__(self, root: str | None = None, download: bool = False) -> None:
        self.root, self.download = root, download

    def check(self) -> None:
        check_dataset_available("mnist", self.root, self.download)

    def load(self) -> DatasetBundle:
        from framework.data.mnist import build_mnist

        return build_mnist(self.root, download=self.download)


class ImageFolder(DataSource):
    """An ImageNet-style tree ``root/{train,val}/<class>/*.jpg``, resized and cropped to ``image_size``.

    ``transforms``: ``dataset`` (ImageNet statistics, bilinear, 87.5 % centre crop), ``weights`` (the
    resize, crop, interpolation and statistics the model's pretrained weights declare, which the
    run passes in as ``weights_transforms``) or ``auto`` (``weights`` when the model loads weights
    that declare them, ``dataset`` otherwise). ``image_size`` null: 224, or the weights' crop size;
    a number with ``weights``: that crop, the resize keeping the weights' ratio to it."""

    def __init__(
        self,
        root: str | None = None,
        image_size: int | None = None,
        augment: bool = True,
        transforms: str = "auto",
        weights_transforms: ImageTransforms | Mapping[str, Any] | None = None,
    ) -> None:
        if image_size is not None:
            _positive_int("image_size", image_size)
        if transforms not in TRANSFORM_SOURCES:
            raise ConfigError(f"transforms={transforms!r} is invalid; allowed: {' | '.join(TRANSFORM_SOURCES)}")
        if transforms == "weights" and weights_transforms is None:
            raise ConfigError(
                "dataset.transforms=weights but the model loads no weights that declare a preprocessing; "
                "allowed: dataset.transforms=auto|dataset, or model=torchvision model.weights=... / "
                "model=timm model.pretrained=true"
            )
        self.root, self.augment = root, augment
        if weights_transforms is not None:
            weights_transforms = ImageTransforms.coerce(weights_transforms)
        if transforms == "dataset" or weights_transforms is None:
            self.spec = dataset_transforms(image_size or DEFAULT_IMAGE_SIZE)
        else:
            self.spec = weights_transforms.with_crop(image_size) if image_size else weights_transforms
        self.image_size = self.spec.crop_size
        self.input_shape = (3, self.image_size, self.image_size)

    def check(self) -> None:
        check_dataset_available("imagefolder", self.root)

    @property
    def num_classes(self) -> int:  # type: ignore[override]  # read from the folder when asked, where other sources hold a number
        # the class folders of train/, found by check()
        self.check()
        return sum(1 for p in (require_root("imagefolder", self.root) / "train").iterdir() if p.is_dir())

    def load(self) -> DatasetBundle:
        from framework.data.imagefolder import build_imagefolder

        return build_imagefolder(self.root, augment=self.augment, spec=self.spec)


class Synthetic(DataSource):
    """Seeded random tensors of any ``shape`` and class count, for smoke tests and benchmarks."""

    def __init__(
        self,
        shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        train_size: int = 512,
        val_size: int = 128,
        seed: int = 0,
    ) -> None:
        shape = tuple(shape)
        if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
            raise ConfigError(f"shape={list(shape)} is invalid; allowed: three positive integers [C, H, W]")
        self.input_shape = shape
        self.num_classes = _positive_int("num_classes", num_classes)
        self.train_size = _positive_int("train_size", train_size)
        self.val_size = _positive_int("val_size", val_size)
        self.seed = seed

    def load(self) -> DatasetBundle:
        from framework.data.synthetic import build_synthetic

        return build_synthetic(self.input_shape, self.num_classes, self.train_size, self.val_size, self.seed)


class LoadedSource(DataSource):
    """A source around data that is already loaded (a target that returned a bundle)."""

    def __init__(self, bundle: DatasetBundle) -> None:
        self.bundle = bundle
        self.num_classes, self.input_shape = bundle.num_classes, tuple(bundle.input_shape)

    def load(self) -> DatasetBundle:
        return self.bundle


def as_data_source(built: Any, target: str) -> DataSource:
    """What ``dataset._target_`` built, as a source; one line when it is neither a source nor a
    bundle."""
    if isinstance(built, DatasetBundle):
        return LoadedSource(built)
    missing = [name for name in ("num_classes", "input_shape", "load") if not hasattr(built, name)]
    if missing:
        raise ConfigError(
            f"dataset._target_={target} returned a {type(built).__name__} without {', '.join(missing)}; "
            "allowed: an object with num_classes, input_shape and load() (see framework.data.DataSource) "
            "or a framework.data.DatasetBundle"
        )
    shape = built.input_shape
    if not (
        isinstance(shape, (tuple, list)) and len(shape) in (2, 3) and all(isinstance(s, int) and s >= 1 for s in shape)
    ):
        raise ConfigError(
            f"dataset._target_={target} gives input_shape={shape!r}; allowed: positive integers (C, H, W) for "
            "images or (C, L) for 1-D signals"
        )
    _positive_int(f"dataset._target_={target} num_classes", built.num_classes)
    return built


def load_splits(source: DataSource, target: str) -> DatasetBundle:
    """``source.load()`` as a bundle (a ``(train, val)`` pair is accepted too)."""
    loaded = source.load()
    if isinstance(loaded, DatasetBundle):
        return loaded
    if isinstance(loaded, (tuple, list)) and len(loaded) == 2:
        return DatasetBundle(loaded[0], loaded[1], source.num_classes, tuple(source.input_shape))
    raise ConfigError(
        f"dataset._target_={target}: load() returned a {type(loaded).__name__}; allowed: a DatasetBundle "
        "or a (train, val) pair of datasets"
    )
