"""precision=bf16-mixed as a run, on the CPU: it prunes to its target with exact masks, and a
SIGKILL followed by resume=auto ends bit-identical to the uninterrupted run (fp16 with its scaler
needs CUDA: bench/cuda_check.py)."""

from __future__ import annotations

import signal

import pytest
import torch
from support import cli_dirs
from test_reliability import final_state, start_cli, wait_for_epochs

EPOCHS = 3
RUN = [
    "precision=bf16-mixed",
    "pruner=agp",
    f"epochs={EPOCHS}",
    "schedule.ending_epoch=2",
    "tracking=none",
    "deploy.enabled=false",  # the deploy step's latencies are measured, not learned
    "loader.batch_size=16",
    "loader.limit_train_batches=4",
    "loader.limit_val_batches=1",
]


@pytest.mark.slow
def test_bf16_mixed_prunes_to_its_target_with_exact_masks_and_resumes_bit_identical(run_experiment, tmp_path):
    crash_dir = tmp_path / "crash"
    process = start_cli([*RUN, *cli_dirs(crash_dir, mlflow=False)])
    wait_for_epochs(crash_dir / "run" / "metrics.jsonl", 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted = torch.load(crash_dir / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert 1 <= interrupted["epoch"] < EPOCHS  # killed mid-run, with a checkpoint to resume

    # the uninterrupted run, then the killed one resumed (both in this process)
    run_experiment(RUN, run_dir=tmp_path / "straight" / "run")
    run_experiment([*RUN, "resume=auto"], run_dir=crash_dir / "run")

    straight, straight_metrics = final_state(tmp_path / "straight" / "run")
    resumed, resumed_metrics = final_state(crash_dir / "run")
    assert straight["precision"] == {"precision": "bf16-mixed", "scaler": None}
    assert straight["hooks"]["config"]["params"]["precision"] == "bf16-mixed"
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for index, state in straight["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, resumed["optimizer"]["state"][index][name]), (index, name)
    assert resumed_metrics == straight_metrics

    # pruned to the target, the masked weights exactly zero in float32
    final = straight_metrics[EPOCHS - 1]
    target = final["pruning/target_sparsity"]
    assert target == pytest.approx(0.7)
    masks = straight["hooks"]["pruning"]["masks"]
    assert masks
    for name, mask in masks.items():
        weight = straight["model"][name]
        assert weight.dtype == torch.float32
        assert torch.count_nonzero(weight[mask == 0]) == 0, name
        assert abs(final[f"sparsity/{name}"] - target) <= 1 / mask.numel(), name
    assert final["sparsity/total"] == pytest.approx(target, abs=1e-3)
