"""Process-level reliability: exact resume after SIGKILL, signals, NaN, failing multirun jobs.

Each test runs the app in a process of its own, as a user (or a cluster scheduler) would.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from support import HANG_S, ROOT, cli_dirs, run_cli

# deploy.enabled=false: the deploy step measures latencies, which no two runs share; what is learned is compared
BASE = ["epochs=4", "tracking.log_model=false", "loader.batch_size=16", "deploy.enabled=false"]


def start_cli(args):
    """``python run.py args`` started in a process of its own (forked by :mod:`zygote`: its pid, its
    signals, Ctrl-C handled as in a terminal, stdout and stderr kept for ``communicate``)."""
    import zygote

    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    return zygote.ForkedRun([str(ROOT / "run.py"), *args], cwd=ROOT, env=env)


def wait_for_epochs(metrics_file: Path, count: int, process, timeout=HANG_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics_file.is_file() and len(metrics_file.read_text().splitlines()) >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError("the run did not reach the expected epoch in time")


def final_state(run_dir: Path):
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last_per_epoch = {r["epoch"]: r for r in records}
    return checkpoint, last_per_epoch


def runs_of(store: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id]) if found else [])


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    pruning = ["pruner=agp", "schedule.ending_epoch=3", "pruner/criterion=random"]
    straight_dir = tmp_path / "straight"
    result = run_cli([*BASE, *pruning, *cli_dirs(straight_dir), "tracking.experiment=straight"])
    assert result.returncode == 0, result.stderr[-2000:]

    crash_dir = tmp_path / "crash"
    args = [*BASE, *pruning, *cli_dirs(crash_dir), "tracking.experiment=crash"]
    process = start_cli(args)
    wait_for_epochs(crash_dir / "run" / "metrics.jsonl", 2, process)
    time.sleep(0.15)  # into epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len((crash_dir / "run" / "metrics.jsonl").read_text().splitlines()) < 4

    resumed = run_cli([*args, "resume=auto"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    straight, straight_metrics = final_state(straight_dir / "run")
    crashed, crashed_metrics = final_state(crash_dir / "run")
    assert crashed["epoch"] == straight["epoch"] == 4
    for key, value in straight["model"].items():
        assert torch.equal(value, crashed["model"][key]), key
    for key, mask in straight["hooks"]["pruning"]["masks"].items():
        assert torch.equal(mask, crashed["hooks"]["pruning"]["masks"][key]), key
    assert crashed_metrics == straight_metrics

    client, runs = runs_of(crash_dir, "crash")
    assert len(runs) == 1  # the resumed job continued the same MLflow run
    run = runs[0]
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val/top1")
    assert sorted({m.step for m in history}) == [0, 1, 2, 3]
    assert run.data.metrics["val/top1"] == straight_metrics[3]["val/top1"]


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_mark_the_run_killed_and_leave_a_resumable_checkpoint(tmp_path, signum, code):
    args = [*BASE, "epochs=30", *cli_dirs(tmp_path), "tracking.experiment=signals"]
    process = start_cli(args)
    wait_for_epochs(tmp_path / "run" / "metrics.jsonl", 1, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=HANG_S)
    assert process.returncode == code, stderr[-2000:]
    assert "resume=auto" in stderr
    client, runs = runs_of(tmp_path, "signals")
    assert [r.info.status for r in runs] == ["KILLED"]
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert 0 <= checkpoint["epoch"] < 30  # the last finished epoch (the signal may beat its save)
    assert checkpoint["hooks"]["trackers"]["mlflow"]["run_id"] == runs[0].info.run_id


@pytest.mark.slow
def test_nan_loss_fails_the_run_keeps_the_checkpoint_and_other_jobs(tmp_path):
    result = run_cli(
        [
            "-m",
            "optimizer.lr=0.05,1e30",
            "epochs=2",
            "tracking.log_model=false",
            *cli_dirs(tmp_path),
            "tracking.experiment=nan_loss",  # (a bare nan would be read as a number)
        ]
    )
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "training loss became nan" in error_lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    client, runs = runs_of(tmp_path, "nan_loss")
    by_lr = {r.data.params["optimizer.lr"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert by_lr["0.05"].info.status == "FINISHED"
    assert len(client.get_metric_history(by_lr["0.05"].info.run_id, "val/top1")) == 2
    assert by_lr["1e+30"].info.status == "FAILED"
    # the failed job keeps its last good checkpoint (taken before the first epoch)
    kept = torch.load(tmp_path / "multirun" / "1" / "checkpoints" / "last.pt", weights_only=True)
    assert kept["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_unreachable_tracking_server_fails_fast_before_training(tmp_path):
    from mlflow_server import free_port

    args = [*cli_dirs(tmp_path), f"tracking.uri=http://127.0.0.1:{free_port()}"]
    result = run_cli(args)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "cannot reach the MLflow store" in errors[0], result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    # failed at the first call: MLflow's own retries (about 4 minutes) would each log a line
    assert "Retrying" not in result.stdout + result.stderr, result.stdout[-2000:]


def test_truncated_pretrained_file_is_one_line(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"block1.0.weight": torch.randn(32, 1, 3, 3)}, path)
    path.write_bytes(path.read_bytes()[:100])
    result = run_cli([f"pretrained={path}", *cli_dirs(tmp_path)])
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and str(path) in errors[0], result.stderr


def test_pretrained_file_with_wrong_keys_names_missing_and_unexpected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"features.0.weight": torch.randn(4, 1, 3, 3)}, path)
    result = run_cli([f"pretrained={path}", *cli_dirs(tmp_path)])
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert "missing" in errors[0] and "unexpected" in errors[0] and "features.0.weight" in errors[0]
