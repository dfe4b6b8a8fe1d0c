"""build_loaders: seeded, reproducible shuffling independent of the global RNG."""

import pytest
import torch

from framework.data import Synthetic, build_loaders
from framework.errors import ConfigError


def labels_in_order(loader):
    return torch.cat([labels for _, labels in loader])


@pytest.fixture(scope="module")
def bundle():
    return Synthetic(shape=(1, 2, 2), num_classes=50, train_size=64, val_size=20).load()


def test_same_seed_same_order_whatever_the_global_rng(bundle):
    torch.manual_seed(0)
    first = labels_in_order(build_loaders(bundle, 8, 0, seed=3)[0])
    torch.manual_seed(99)
    second = labels_in_order(build_loaders(bundle, 8, 0, seed=3)[0])
    assert torch.equal(first, second)


def test_other_seed_other_order_and_epochs_differ(bundle):
    train, _ = build_loaders(bundle, 8, 0, seed=3)
    epoch1, epoch2 = labels_in_order(train), labels_in_order(train)
    assert not torch.equal(epoch1, epoch2)
    assert not torch.equal(epoch1, labels_in_order(build_loaders(bundle, 8, 0, seed=4)[0]))
    assert sorted(epoch1.tolist()) == sorted(bundle.train.tensors[1].tolist())


def test_validation_keeps_dataset_order(bundle):
    _, val = build_loaders(bundle, 6, 0, seed=3)
    assert torch.equal(labels_in_order(val), bundle.val.tensors[1])
    assert [len(labels) for _, labels in val] == [6, 6, 6, 2]


def test_worker_processes_give_the_same_order(bundle):
    in_process = labels_in_order(build_loaders(bundle, 8, 0, seed=3)[0])
    with_worker = labels_in_order(build_loaders(bundle, 8, 1, seed=3)[0])
    assert torch.equal(in_process, with_worker)


@pytest.mark.parametrize(
    "batch_size, workers, key",
    [(0, 0, "batch_size"), (8, -1, "num_workers"), (2.5, 0, "batch_size")],
)
def test_bad_loader_options(bundle, batch_size, workers, key):
    with pytest.raises(ConfigError, match=key):
        build_loaders(bundle, batch_size, workers, seed=0)


def test_the_order_of_an_epoch_is_a_function_of_the_epoch(bundle):
    # A fresh loader told "epoch 2" (a resumed run) gives what a loader at its third pass gives.
    running, _ = build_loaders(bundle, 8, 0, seed=3)
    passes = [labels_in_order(running) for _ in range(3)]
    fresh, _ = build_loaders(bundle, 8, 0, seed=3)
    fresh.sampler.set_epoch(2)
    assert torch.equal(labels_in_order(fresh), passes[2])
    assert not torch.equal(passes[1], passes[2])


class RandomPerSample(torch.utils.data.Dataset):
    """Returns a random draw from the process's torch RNG, as random augmentation does."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return torch.rand(1), index


def draws_by_index(loader):
    pairs = [(int(i), float(x)) for xs, idx in loader for x, i in zip(xs, idx)]
    return dict(pairs)


def test_worker_rngs_are_reseeded_per_epoch_so_a_resumed_epoch_matches():
    from framework.data.bundle import DatasetBundle

    data = DatasetBundle(RandomPerSample(), RandomPerSample(), 2, (1,))
    running, _ = build_loaders(data, 3, 2, seed=5)
    epochs = [draws_by_index(running) for _ in range(3)]
    torch.manual_seed(1234)  # the main process's RNG must not matter
    resumed, _ = build_loaders(data, 3, 2, seed=5)
    resumed.sampler.set_epoch(2)
    assert draws_by_index(resumed) == epochs[2]
    assert epochs[1] != epochs[2]
