"""``build_loaders``: DataLoaders whose order depends only on the seed.

The training loader shuffles with its own seeded ``torch.Generator`` rather than the global RNG,
so the sample order is reproducible on the CPU and unaffected by whatever else draws random
numbers (weight initialisation, pruning). With worker processes, PyTorch derives each worker's
torch seed from that generator; ``seed_worker`` extends it to ``random`` and NumPy. Random
augmentation in the main process (``num_workers=0``) draws from the global torch RNG, which the
caller seeds.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader

from framework.data.bundle import DatasetBundle
from framework.errors import ConfigError


def seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's RNGs in a worker from the torch seed PyTorch gave it."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def build_loaders(
    bundle: DatasetBundle, batch_size: int, num_workers: int = 0, seed: int = 0
) -> tuple[DataLoader, DataLoader]:
    """Shuffled training loader and in-order validation loader over ``bundle``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"num_workers must be an integer >= 0; got {num_workers!r}")
    workers = {
        "num_workers": num_workers,
        "worker_init_fn": seed_worker if num_workers > 0 else None,
        # Keeps workers (and their RNG streams) alive across epochs instead of re-forking.
        "persistent_workers": num_workers > 0,
    }
    train = DataLoader(
        bundle.train,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        **workers,
    )
    val = DataLoader(bundle.val, batch_size=batch_size, shuffle=False, **workers)
    return train, val
