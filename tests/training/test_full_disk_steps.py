"""A disk that fills up during the deploy step, and during a checkpoint write of a distill=kd run:
nothing the user produced is lost (the previous last.pt loads, metrics.jsonl keeps its epochs), the
command says so in one line and exits 2, and resume=auto, once there is room, finishes the run.

The disk fills for real: a forked copy of the test process runs the command and, on entry to the
named function of ours, lowers its ``RLIMIT_FSIZE`` (SIGXFSZ ignored), so every later write past
64 KiB fails with EFBIG as a full disk fails with ENOSPC. The small run files still fit, the
ONNX model and the checkpoint do not. stderr goes through a pipe, which the limit does not touch.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import sys
import threading

import torch
from kill_points import run_forked
from support import cli_dirs

from framework.tracking.metrics_file import read_metrics
from framework.training import load_checkpoint

FULL_AT_BYTES = 64 * 1024
FAST = [
    "tracking=none",
    "loader.batch_size=32",
    "loader.limit_train_batches=3",
    "loader.limit_val_batches=2",
]


def _fill_disk_at(target: str, call: int) -> None:
    """The ``call``-th call of ``target`` (``module:Class.method`` or ``module:function``) finds the disk full."""
    module_name, _, qualified = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = qualified.split(".")
    for part in path:
        owner = getattr(owner, part)
    original, calls = getattr(owner, name), 0

    def trapped(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == call:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_AT_BYTES, resource.RLIM_INFINITY))
        return original(*args, **kwargs)

    setattr(owner, name, trapped)


def run_with_full_disk(argv: list[str], target: str, call: int) -> tuple[int, list[str]]:
    """The command ``run.py argv`` in a forked process whose disk fills at ``target``: its exit
    code and the non-empty lines of its stderr."""
    read_end, write_end = os.pipe()
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(os.fdopen(read_end, "rb").read()))
    reader.start()

    def child() -> None:
        os.dup2(write_end, 2)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        _fill_disk_at(target, call)
        sys.argv = ["run.py", *argv]
        from framework.app import main

        main()

    code = run_forked(child)
    os.close(write_end)
    reader.join()
    return code, [line for line in received[0].decode().splitlines() if line.strip()]


def _assert_nothing_lost(run_dir, epochs_kept: int) -> None:
    checkpoints = run_dir / "checkpoints"
    assert load_checkpoint(checkpoints / "last.pt")["epoch"] == epochs_kept
    assert [int(m["epoch"]) for m in read_metrics(run_dir / "metrics.jsonl")][:epochs_kept] == list(range(epochs_kept))
    assert not [p.name for p in checkpoints.iterdir() if p.name.endswith(".tmp")]  # no partial file left


def test_a_disk_full_during_the_deploy_step_keeps_the_last_epoch_and_resume_finishes(run_experiment, tmp_path):
    run = [*FAST, "epochs=2"]
    code, errors = run_with_full_disk(
        [*run, *cli_dirs(tmp_path, mlflow=False)], "framework.deploy.variants:build_deployable", 1
    )
    run_dir = tmp_path / "run"
    assert code == 2, errors
    # the deploy step's own line (a log line: skipped, the model kept) is not an error; the checkpoint is
    assert len(errors) == 1 and errors[0].startswith("error: cannot write the checkpoint"), errors
    assert "previous checkpoint" in errors[0] and "resume=auto" in errors[0]
    _assert_nothing_lost(run_dir, 1)
    log_text = (run_dir / "run.log").read_text()
    assert f"the deploy step could not write to {run_dir / 'deploy'}: the disk is full ([Errno 27]" in log_text

    run_experiment([*run, "resume=auto"], run_dir=run_dir)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 2
    assert [int(m["epoch"]) for m in read_metrics(run_dir / "metrics.jsonl")] == [0, 1]
    assert (run_dir / "deploy" / "model.onnx").is_file()
    assert json.loads((run_dir / "run_status.json").read_text())["status"] == "FINISHED"


def test_a_disk_full_during_a_kd_checkpoint_keeps_the_previous_one_and_resume_finishes(run_experiment, tmp_path):
    # the dense teacher is copied when pruning starts (epoch 1), so the epoch-1 checkpoint holds it
    run = [
        *FAST,
        "distill=kd",
        "pruner=agp_filter",
        "epochs=3",
        "schedule.starting_epoch=1",
        "schedule.ending_epoch=2",
        "deploy.enabled=false",
    ]
    code, errors = run_with_full_disk(
        [*run, *cli_dirs(tmp_path, mlflow=False)], "framework.training.checkpoint_hook:CheckpointHook.after_epoch", 2
    )
    run_dir = tmp_path / "run"
    assert code == 2, errors
    assert len(errors) == 1 and errors[0].startswith("error: cannot write the checkpoint"), errors
    assert "resume=auto" in errors[0]
    _assert_nothing_lost(run_dir, 1)

    run_experiment([*run, "resume=auto"], run_dir=run_dir)
    final = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert final["epoch"] == 3
    assert final["hooks"]["distillation"], "the teacher is part of the resumed run's checkpoint"
    assert [int(m["epoch"]) for m in read_metrics(run_dir / "metrics.jsonl")] == [0, 1, 2]
    assert json.loads((run_dir / "run_status.json").read_text())["status"] == "FINISHED"
