"""SIGKILL mid-epoch + resume=auto is exact with data-loader worker processes and augmentation.

The data is a small CIFAR-10 folder in the real file format, read by two persistent workers that
apply random crops and flips: the resumed epoch must see the same order and the same augmentation
draws as the uninterrupted run.
"""

from __future__ import annotations

import pickle
import re
import signal

import numpy as np
import pytest
import torch
from cli_in_process import run_main
from support import cli_dirs
from test_reliability import final_state, runs_of, start_cli, wait_for_epochs

IMAGES_PER_BATCH = 32


def worker_run_overrides(data_root) -> list:
    """Every config key these tests set, in one place (the config schema is being reshaped)."""
    return [
        "dataset=cifar10",
        f"dataset.root={data_root}",
        "loader.num_workers=2",
        "dataset.augment=true",
        "loader.batch_size=16",
        "epochs=3",
        "pruner=agp",
        "schedule.ending_epoch=2",
        "tracking.log_model=false",
        "deploy.enabled=false",  # latencies measured by the deploy step are not learned state
    ]


def write_random_cifar10(root):
    """A CIFAR-10 folder (the archive's pickle format) of random images, 32 per batch file."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        entry = {
            "batch_label": name,
            "labels": [int(v) for v in rng.integers(0, 10, IMAGES_PER_BATCH)],
            "data": rng.integers(0, 256, (IMAGES_PER_BATCH, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(IMAGES_PER_BATCH)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": IMAGES_PER_BATCH}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


@pytest.mark.slow
def test_sigkill_then_resume_with_two_workers_equals_an_uninterrupted_run(tmp_path):
    write_random_cifar10(tmp_path / "data")
    base = worker_run_overrides(tmp_path / "data")

    # only the run that is killed needs a process of its own; the others run in this one
    straight_dir = tmp_path / "straight"
    result = run_main([*base, *cli_dirs(straight_dir), "tracking.experiment=straight"])
    assert result.returncode == 0, result.stderr[-2000:]

    crash_dir = tmp_path / "crash"
    args = [*base, *cli_dirs(crash_dir), "tracking.experiment=crash"]
    process = start_cli(args)
    # Two epochs logged: the checkpoint of the first is on disk (it is saved before the second
    # epoch starts), so the resumed run starts at epoch 1 or 2, not from scratch.
    wait_for_epochs(crash_dir / "run" / "metrics.jsonl", 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len((crash_dir / "run" / "metrics.jsonl").read_text().splitlines()) < 3

    resumed = run_main([*args, "resume=auto"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    resumed_at = re.search(r"resumed at epoch (\d+)", resumed.stderr + resumed.stdout)
    assert resumed_at and int(resumed_at.group(1)) >= 1, resumed.stderr[-2000:]

    straight, straight_metrics = final_state(straight_dir / "run")
    crashed, crashed_metrics = final_state(crash_dir / "run")
    assert crashed["epoch"] == straight["epoch"] == 3
    for key, value in straight["model"].items():
        assert torch.equal(value, crashed["model"][key]), key
    for key, mask in straight["hooks"]["pruning"]["masks"].items():
        assert torch.equal(mask, crashed["hooks"]["pruning"]["masks"][key]), key
    for index, state in straight["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, crashed["optimizer"]["state"][index][name]), (index, name)
    assert crashed_metrics == straight_metrics

    _, runs = runs_of(crash_dir, "crash")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
