"""Under torch.distributed the calibration sums are added up over the ranks (gloo, two processes):
every rank ranks on the same numbers, equal to one process seeing both ranks' batches."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from framework.models.simple_cnn import SimpleCNN
from framework.pruning import build_pruner
from framework.pruning.scores.calibration import seeded_batches


def dataset():
    generator = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(
        torch.randn(32, 1, 8, 8, generator=generator), torch.randint(0, 10, (32,), generator=generator)
    )


def pruner_with(source, batches):
    torch.manual_seed(0)
    model = SimpleCNN(in_channels=1, width=0.125)
    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        criterion="taylor",
        final_sparsity=0.5,
        starting_epoch=0,
        ending_epoch=1,
        coupling="layer",
        calibration_batches=batches,
    )
    pruner.set_calibration_data(source)
    return pruner


def rank_main(rank, store_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=2)
    try:
        pruner = pruner_with(seeded_batches(dataset(), 4, seed=1, rank=rank), batches=2)
        pruner.on_epoch_start(0)
        torch.save({"sums": pruner.rule.criterion.sums, "masks": pruner.masks}, f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes importing torch
def test_sums_are_reduced_over_ranks(tmp_path):
    mp.spawn(rank_main, args=(str(tmp_path / "store"), str(tmp_path / "out")), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"out.{r}", weights_only=True) for r in (0, 1)]
    # one process that sees rank 0's and rank 1's batches
    both = [b for r in (0, 1) for b in list(seeded_batches(dataset(), 4, seed=1, rank=r)(0.0))[:2]]
    single = pruner_with(both, batches=4)
    single.on_epoch_start(0)
    for key, expected in single.rule.criterion.sums.items():
        for state in ranks:
            assert torch.allclose(state["sums"][key], expected, rtol=1e-9)
    for key in ranks[0]["masks"]:
        assert torch.equal(ranks[0]["masks"][key], ranks[1]["masks"][key])
