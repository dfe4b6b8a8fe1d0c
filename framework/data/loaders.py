"""``build_loaders``: DataLoaders whose order and augmentation depend only on (seed, epoch).

Exact resume needs the state of the data pipeline at an epoch boundary to be a pure function of
the epoch, not of a random stream that ran since the process started (a resumed process has not
run it). So:

- the training order of epoch ``e`` is a permutation drawn from a generator seeded with
  ``derive_seed(seed, e)`` (:class:`EpochShuffle`); the trainer calls ``set_epoch(e)``, and a
  loop that does not call it still gets a new order per pass;
- in a worker process, the RNGs that random augmentation draws from (torch, ``random``, NumPy)
  are re-seeded with ``derive_seed(seed, e, worker_id)`` before the first sample of epoch ``e``
  (:class:`EpochSeededDataset`). Workers are persistent, so the epoch travels with each index.
  Which batches a worker gets is fixed by the DataLoader (round robin), so a resumed epoch is
  the same as the uninterrupted one for the same ``num_workers``;
- with ``num_workers=0`` augmentation draws from the main process's global torch RNG, which the
  checkpoint saves and restores (``framework.training.rng``).

Nothing here draws from the global RNGs of the main process.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from framework.data.bundle import DatasetBundle
from framework.errors import ConfigError


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. ``(seed, epoch, worker_id)``)."""
    entropy = [int(part) % 2**63 for part in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def seed_process_rngs(seed: int) -> None:
    """Seed torch's, Python's and NumPy's global RNGs of this process from ``seed``."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's RNGs in a worker from the torch seed PyTorch gave it (until the
    first sample re-seeds them per epoch, see :class:`EpochSeededDataset`)."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


class EpochShuffle(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` pairs: a permutation of ``range(size)`` fixed by (seed, epoch).

    ``set_epoch`` chooses the epoch of the next pass (as with PyTorch's DistributedSampler);
    without it, each pass takes the epoch after the previous one.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        order = torch.randperm(self.size, generator=generator).tolist()
        return iter([(epoch, index) for index in order])

    def __len__(self) -> int:
        return self.size


class DistributedEpochShuffle(EpochShuffle):
    """Rank ``rank``'s share of :class:`EpochShuffle`'s permutation for ``world_size`` processes.

    Every rank draws the same (seed, epoch) permutation, pads it to a multiple of ``world_size``
    with its first indices (as PyTorch's DistributedSampler does, so every rank takes the same
    number of steps) and keeps every ``world_size``-th index from ``rank``: the ranks' shares
    cover the epoch exactly once (plus the padding). With ``world_size=1`` it is EpochShuffle.
    """

    def __init__(self, size: int, seed: int, rank: int, world_size: int):
        super().__init__(size, seed)
        self.rank = rank
        self.world_size = world_size
        self.per_rank = -(-size // world_size)  # ceil

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pairs = list(super().__iter__())
        padded = pairs + pairs[: self.per_rank * self.world_size - len(pairs)]
        return iter(padded[self.rank :: self.world_size])

    def __len__(self) -> int:
        return self.per_rank


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...``: the ranks' shares of an in-order split, without
    padding, so that metrics summed over the ranks count every sample exactly once."""

    def __init__(self, size: int, rank: int, world_size: int):
        self.indices = list(range(rank, size, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochSeededDataset(Dataset):
    """``dataset`` indexed by ``(epoch, index)``; in a worker, the first sample of each epoch
    re-seeds the worker's RNGs from ``(seed, epoch, worker_id)``."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self._seeded_epoch: int | None = None  # per worker: each holds its own copy

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        worker = get_worker_info()
        if worker is not None and epoch != self._seeded_epoch:
            seed_process_rngs(derive_seed(self.seed, epoch, worker.id))
            self._seeded_epoch = epoch
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


def build_loaders(
    bundle: DatasetBundle,
    batch_size: int,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> tuple[DataLoader, DataLoader]:
    """Shuffled training loader and in-order validation loader over ``bundle``.

    With ``world_size > 1`` (one process per rank, see :mod:`framework.process.distributed`) each loader
    holds rank ``rank``'s share: ``batch_size`` is per process, and workers' augmentation seeds
    include the rank so that ranks do not draw the same random crops. ``pin_memory`` (for a CUDA
    device): batches in page-locked memory, so that their copy to the GPU runs asynchronously.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"num_workers must be an integer >= 0; got {num_workers!r}")
    workers: dict[str, Any] = {
        "num_workers": num_workers,
        "worker_init_fn": seed_worker if num_workers > 0 else None,
        # Keeps workers alive across epochs instead of re-forking; the epoch reaches them with
        # each index, so their RNGs are still re-seeded per epoch.
        "persistent_workers": num_workers > 0,
        "pin_memory": pin_memory,
    }
    distributed = world_size > 1
    train_sampler = (
        DistributedEpochShuffle(_size(bundle.train), seed, rank, world_size)
        if distributed
        else EpochShuffle(_size(bundle.train), seed)
    )
    augmentation_seed = derive_seed(seed, rank) if distributed else seed
    train = DataLoader(
        EpochSeededDataset(bundle.train, augmentation_seed),
        batch_size=batch_size,
        sampler=train_sampler,
        # Only the DataLoader's own base seed for workers is drawn from it: kept off the global
        # RNG so that starting workers does not shift the main process's random stream.
        generator=torch.Generator().manual_seed(seed),
        **workers,
    )
    if distributed:
        val = DataLoader(
            bundle.val, batch_size=batch_size, sampler=ShardSampler(_size(bundle.val), rank, world_size), **workers
        )
    else:
        val = DataLoader(bundle.val, batch_size=batch_size, shuffle=False, **workers)
    return train, val


def training_split(loader: DataLoader) -> Dataset:
    """The split a training loader of :func:`build_loaders` reads (unwrapped from its per-epoch
    seeding), for drawing batches of one's own from it (the deploy step's int8 calibration)."""
    dataset = loader.dataset
    return dataset.dataset if isinstance(dataset, EpochSeededDataset) else dataset


def limit_batches(
    bundle: DatasetBundle, batch_size: int, train: int | None = None, val: int | None = None
) -> DatasetBundle:
    """The bundle with each split cut to its first ``N * batch_size`` samples (``None``: whole):
    the same few batches every epoch (``loader.limit_train_batches``, the debug presets)."""
    from dataclasses import replace

    from torch.utils.data import Subset

    def cut(split: Dataset, batches: int | None) -> Dataset:
        if batches is None or batches * batch_size >= _size(split):
            return split
        return Subset(split, range(batches * batch_size))

    test = cut(bundle.test, val) if bundle.test is not None else None  # cut like validation
    return replace(bundle, train=cut(bundle.train, train), val=cut(bundle.val, val), test=test)


def _size(split: Dataset) -> int:
    """The number of samples of a split (every split we build is a sized map-style dataset)."""
    return len(cast(Sized, split))
