"""The ranks' shares of the training order and of the validation split (no process group needed)."""

from __future__ import annotations

import pytest

from framework.data.loaders import DistributedEpochShuffle, EpochShuffle, ShardSampler


@pytest.mark.parametrize("size,world", [(10, 2), (11, 2), (11, 3), (7, 1)])
def test_rank_shares_are_the_epoch_shuffle_split_and_padded(size, world):
    for epoch in (0, 3):
        full = EpochShuffle(size, seed=5)
        full.set_epoch(epoch)
        order = list(full)
        shares = []
        for rank in range(world):
            sampler = DistributedEpochShuffle(size, seed=5, rank=rank, world_size=world)
            sampler.set_epoch(epoch)
            shares.append(list(sampler))
            assert len(shares[-1]) == len(sampler) == -(-size // world)  # every rank: the same steps
        interleaved = [pair for step in zip(*shares) for pair in step]
        # Every rank draws the same (seed, epoch) permutation: the shares interleave back into it,
        # padded with its first indices.
        assert interleaved[:size] == order
        assert interleaved[size:] == order[: len(interleaved) - size]


def test_a_new_epoch_gives_each_rank_a_new_share():
    sampler = DistributedEpochShuffle(20, seed=0, rank=1, world_size=2)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


@pytest.mark.parametrize("size,world", [(10, 2), (11, 2), (11, 4)])
def test_validation_shards_count_every_sample_once(size, world):
    shards = [list(ShardSampler(size, rank, world)) for rank in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(size))
