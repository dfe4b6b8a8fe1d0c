"""SIGKILL at the moments a probe from outside could not hit on a loaded machine, each followed by
``resume=auto``, in one run with distillation, group lasso, a data criterion and int8: killed
during the data criterion's calibration, then during a step that distils and adds the group-lasso
penalty, then during the int8 calibration of the deploy step. The resumed run ends bit-for-bit
where the uninterrupted one does: weights, masks, optimizer state, every learned metric and both
ONNX files (issue 29). The kills are exact (tests/kill_points.py): each one is asserted to have
happened where it was meant to, from the checkpoint it leaves."""

from __future__ import annotations

import json

import sklearn.datasets  # noqa: F401
import torch
from kill_points import run_killed_at

# Imported here, before any run seeds: its first import (through rich, which scikit-learn's progress
# bar uses) draws once from Python's random, so the run that imports it first would end with another
# Python RNG state than runs of the same process after it. Separate processes each draw at the same
# point of the run, so resuming in a new process is unaffected; runs sharing this process are not.

RUN = [
    "tracking=none",
    "progress=false",
    "epochs=3",
    "loader.limit_train_batches=4",
    "loader.limit_val_batches=2",
    "pruner=agp_filter",
    "pruner/criterion=taylor",
    "pruner.calibration_batches=2",
    "schedule.starting_epoch=1",  # a dense epoch first: the teacher has learnt something
    "schedule.ending_epoch=2",
    "distill=kd",
    "regularizer=group_lasso",
    "deploy.quantize=int8",
    "deploy.int8_calibration_batches=3",
]
TRAIN_STEPS = 4


def finished_epochs(run_dir) -> int:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"]


def is_measured(name: str) -> bool:
    """A time (latency, speed-up), or a choice made by timing (int8 is served only where it measured
    faster than fp32 on this machine): no two runs share those."""
    return "_ms_" in name or name.startswith("ms_") or "speedup" in name or name == "deploy/servable_int8"


def learned(run_dir):
    """The checkpoint and every metric but the measured times (no two runs share those)."""
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timeless = [{k: v for k, v in r.items() if not is_measured(k)} for r in records]
    return checkpoint, {r["epoch"]: r for r in timeless}


def assert_same(found, expected, where="checkpoint") -> None:
    """Equal to the bit: tensors with torch.equal, everything else with ==, field by field."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(found, torch.Tensor) and torch.equal(found, expected), where
    elif isinstance(expected, dict):
        assert isinstance(found, dict) and found.keys() == expected.keys(), where
        for key in expected:
            if not is_measured(str(key)):
                assert_same(found[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(found, type(expected)) and len(found) == len(expected), where
        for index, (a, b) in enumerate(zip(found, expected)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert found == expected, where


def test_kills_during_calibration_distillation_and_int8_resume_exactly(run_experiment, tmp_path):
    run_experiment(RUN, tmp_path / "straight")
    crash = tmp_path / "crash"

    # the criterion's calibration at the first pruning epoch (1): its second batch
    run_killed_at("framework.pruning.scores.calibration:Calibration._one_batch", 2, lambda: run_experiment(RUN, crash))
    assert finished_epochs(crash) == 1
    # a step of epoch 2 that distils (the teacher exists from epoch 1) and adds the penalty
    resume = [*RUN, "resume=auto"]
    run_killed_at(
        "framework.training.distillation:DistillationHook.training_loss",
        TRAIN_STEPS + 2,
        lambda: run_experiment(resume, crash),
    )
    assert finished_epochs(crash) == 2
    # the int8 calibration of the deploy step, after the last epoch: its second batch
    run_killed_at("framework.deploy.int8_fallback:_Batches.get_next", 2, lambda: run_experiment(resume, crash))
    assert not (crash / "deploy" / "model_int8.onnx").exists()
    run_experiment(resume, crash)

    straight, straight_metrics = learned(tmp_path / "straight")
    resumed, resumed_metrics = learned(crash)
    assert resumed["epoch"] == straight["epoch"] == 3
    assert_same(resumed, straight)  # weights, optimizer, hooks' state (pruner, teacher), RNG streams
    assert resumed_metrics == straight_metrics
    assert straight_metrics[2]["distill/kd_loss"] > 0 and straight_metrics[2]["regularizer/value"] > 0
    for name in ("model.onnx", "model_int8.onnx"):
        assert (crash / "deploy" / name).read_bytes() == (tmp_path / "straight" / "deploy" / name).read_bytes(), name
