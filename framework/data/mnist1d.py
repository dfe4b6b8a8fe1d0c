"""``mnist1d``: MNIST-1D (Greydanus 2020), ten 1-D digit templates padded, scaled, translated,
sheared and noised into 5,000 signals of length 40: 4,000 for training, 1,000 for test.

It is generated here, offline, by the ``mnist1d`` package's own generator with its default
arguments (seed 42): the package's ``get_dataset`` would download a pickle, which is never
called. The result is cached once in ``cache_dir`` as an ``.npz`` written atomically (parallel
jobs may generate it together) and read back with ``allow_pickle=False``, so the cache can
never run code. A damaged cache file is replaced by a fresh generation.

Splits: ``val_fraction`` of the 4,000 training signals (stratified by class, drawn with
``seed``) is the validation split the run selects on; the 1,000 test signals are the test split,
reported and never selected on. ``val_fraction=0`` trains on all 4,000 and validates on the test
signals, the published baselines' protocol. The generator already standardises the signals
(mean 0, standard deviation 1 over the whole set), so the preprocessing is the identity.
"""

from __future__ import annotations

import logging
import os
import random
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from framework.data.bundle import DatasetBundle
from framework.data.preprocessing import Preprocessing, digit_names
from framework.data.splits import stratified_split
from framework.errors import ConfigError, DataError

NUM_CLASSES = 10
LENGTH = 40
INPUT_SHAPE = (1, LENGTH)
TRAIN_SIZE, TEST_SIZE = 4000, 1000
GENERATOR_SEED = 42  # the package's default: the signals every published MNIST-1D figure used
CACHE_FILE = f"mnist1d_seed{GENERATOR_SEED}_len{LENGTH}.npz"
ARRAYS = {"x": (TRAIN_SIZE, LENGTH), "y": (TRAIN_SIZE,), "x_test": (TEST_SIZE, LENGTH), "y_test": (TEST_SIZE,)}

log = logging.getLogger(__name__)


@contextmanager
def _global_rng_kept() -> Iterator[None]:
    """The generator seeds numpy's and Python's global generators; the run's own draws stay as
    they were."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def generate() -> dict[str, np.ndarray]:
    """The four arrays of MNIST-1D from the package's generator with its default arguments."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError(
            "dataset mnist1d needs the mnist1d package, which is not installed; install it with: pip install mnist1d"
        ) from None
    with _global_rng_kept():
        data = make_dataset(get_dataset_args())
    return {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is missing or not what :func:`write_cache` wrote."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in ARRAYS}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    for name, shape in ARRAYS.items():
        array = arrays[name]
        wanted = np.float32 if name.startswith("x") else np.int64
        if array.shape != shape or array.dtype != wanted:
            return None
        if name.startswith("y") and (array.min() < 0 or array.max() >= NUM_CLASSES):
            return None
    return arrays


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Whole or not at all: a reader (another job) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    np.savez(partial, x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"], y_test=arrays["y_test"])
    os.replace(partial, path)


def cached_arrays(cache_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays from ``cache_dir``, generated (about 3 s) and cached on first use."""
    path = Path(cache_dir).expanduser() / CACHE_FILE
    arrays = _read_cache(path)
    if arrays is not None:
        return arrays
    if path.exists():
        log.warning("%s is not an MNIST-1D cache this program wrote; generating it again", path)
    arrays = generate()
    try:
        write_cache(path, arrays)
    except OSError as error:  # a read-only outputs folder: the run goes on, generating each time
        log.warning("MNIST-1D not cached in %s (%s)", path.parent, error)
    return arrays


def build_mnist1d(cache_dir: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0) -> DatasetBundle:
    """MNIST-1D as ``[1, 40]`` float tensors (arguments checked by :class:`framework.data.MNIST1D`)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction={val_fraction!r} is invalid; allowed: a number in [0, 1)")
    arrays = cached_arrays(cache_dir)
    signals = torch.from_numpy(arrays["x"]).view(-1, *INPUT_SHAPE)
    labels = torch.from_numpy(arrays["y"])
    test = TensorDataset(torch.from_numpy(arrays["x_test"]).view(-1, *INPUT_SHAPE), torch.from_numpy(arrays["y_test"]))
    preprocessing = Preprocessing(INPUT_SHAPE, mean=(0.0,), std=(1.0,), class_names=digit_names())
    if val_fraction == 0.0:
        return DatasetBundle(TensorDataset(signals, labels), test, NUM_CLASSES, INPUT_SHAPE, preprocessing)
    train_idx, val_idx = stratified_split(arrays["y"], val_fraction, seed)
    if len(val_idx) == 0:
        raise ConfigError(
            f"dataset.val_fraction={val_fraction} leaves no validation signal of {TRAIN_SIZE}; use 0.1, or 0 "
            "to validate on the test split"
        )
    return DatasetBundle(
        train=TensorDataset(signals[train_idx], labels[train_idx]),
        val=TensorDataset(signals[val_idx], labels[val_idx]),
        num_classes=NUM_CLASSES,
        input_shape=INPUT_SHAPE,
        preprocessing=preprocessing,
        test=test,
    )
