"""``python -m framework.tracking.recover``: idempotent replay, a new linked run when the old one
is gone, the final status, one-line errors; against real SQLite stores."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from lock_holder import hold_lock_in_child
from mlflow.tracking import MlflowClient
from support import HANG_S, ROOT, metrics_file, tracking_hook
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from framework.errors import TrackingError
from framework.run_context import RunContext
from framework.tracking.metrics_file import read_metrics
from framework.tracking.mlflow_tracker import MLflowTracker
from framework.tracking.recover import RECOVERED_FROM_TAG, recover_run
from framework.training import Hook, Trainer

EPOCHS = 3


class StopAfterEpoch(Hook):
    """Raises ``error`` after epoch ``epoch``, as a crash or Ctrl-C would."""

    def __init__(self, epoch, error):
        self.epoch, self.error = epoch, error

    def after_epoch(self, trainer):
        if trainer.epoch == self.epoch:
            raise self.error


def finished_run(store, run_dir, experiment, extra_hooks=()):
    """A real tiny training run logged to ``store``: its metrics file, status file and run id."""
    run_dir.mkdir(parents=True, exist_ok=True)
    hook = MLflowTracker(
        uri=store,
        experiment=experiment,
        artifact_location=None,
        context=RunContext(run_dir),
        params={"optimizer.lr": "0.1"},
        tags={},
        run_name="tiny",
        log_model=False,
    )
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = nn.Linear(4, 3)
    trainer = Trainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader,
        loader,
        epochs=EPOCHS,
        hooks=[tracking_hook(metrics_file(run_dir, EPOCHS), hook), *extra_hooks],
    )
    try:
        trainer.fit()
    except (RuntimeError, KeyboardInterrupt):
        pass
    return hook.run_id


def steps(client, run_id, key="val/loss"):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


@pytest.fixture
def store(shared_store):
    return f"sqlite:///{shared_store}/mlflow.db"


def test_twice_on_an_intact_run_adds_no_duplicate_rows(store, tmp_path):
    run_id = finished_run(store, tmp_path / "run", "recover-intact")
    first = recover_run(tmp_path / "run", store, "recover-intact")
    second = recover_run(tmp_path / "run", store, "recover-intact")
    assert first.run_id == second.run_id == run_id and not first.created
    assert first.logged == second.logged == 0 and second.skipped == EPOCHS * 7
    client = MlflowClient(store)
    assert steps(client, run_id) == [0, 1, 2]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_run_left_running_gets_the_missing_metrics_and_is_closed(store, tmp_path):
    run_dir = tmp_path / "run"
    run_id = finished_run(store, run_dir, "recover-running")
    client = MlflowClient(store)
    # As after a kill before the run could be closed (the status file still says RUNNING):
    client.update_run(run_id, status="RUNNING")
    (run_dir / "run_status.json").write_text(json.dumps({"status": "RUNNING", "epochs": EPOCHS}))
    result = recover_run(run_dir, store, "recover-running")
    assert result.status == "FINISHED"  # every planned epoch is in metrics.jsonl
    assert client.get_run(run_id).info.status == "FINISHED"
    assert steps(client, run_id) == [0, 1, 2]


def test_a_run_killed_before_its_last_epoch_is_marked_killed(store, tmp_path):
    run_dir = tmp_path / "run"
    run_id = finished_run(store, run_dir, "recover-killed")
    client = MlflowClient(store)
    client.update_run(run_id, status="RUNNING")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n")  # SIGKILL in epoch 2
    (run_dir / "run_status.json").write_text(json.dumps({"status": "RUNNING", "epochs": EPOCHS}))
    assert recover_run(run_dir, store, "recover-killed").status == "KILLED"
    assert client.get_run(run_id).info.status == "KILLED"


def test_a_recorded_failure_is_kept(store, tmp_path):
    run_dir = tmp_path / "run"
    run_id = finished_run(store, run_dir, "recover-failed", [StopAfterEpoch(1, RuntimeError("boom"))])
    assert json.loads((run_dir / "run_status.json").read_text())["status"] == "FAILED"
    client = MlflowClient(store)
    client.update_run(run_id, status="RUNNING")  # the store missed the end
    assert recover_run(run_dir, store, "recover-failed").status == "FAILED"
    assert client.get_run(run_id).info.status == "FAILED"


def test_a_run_gone_from_the_store_gets_a_new_linked_run_once(tmp_path, store):
    run_dir = tmp_path / "run"
    old_id = finished_run(store, run_dir, "recover-gone")
    fresh = f"sqlite:///{tmp_path}/fresh.db"  # the old store was lost: a new, empty one
    first = recover_run(run_dir, fresh, "recovered")
    second = recover_run(run_dir, fresh, "recovered")
    assert first.created and not second.created and first.run_id == second.run_id != old_id
    assert second.logged == 0
    client = MlflowClient(fresh)
    run = client.get_run(first.run_id)
    assert run.data.tags[RECOVERED_FROM_TAG] == old_id and run.info.status == "FINISHED"
    assert steps(client, first.run_id) == [0, 1, 2]
    local = read_metrics(run_dir / "metrics.jsonl")
    assert run.data.metrics["val/loss"] == local[-1]["val/loss"]


def test_a_deleted_run_is_replaced_by_a_linked_one(store, tmp_path):
    run_dir = tmp_path / "run"
    old_id = finished_run(store, run_dir, "recover-deleted")
    MlflowClient(store).delete_run(old_id)
    result = recover_run(run_dir, store, "recover-deleted")
    assert result.created and MlflowClient(store).get_run(result.run_id).data.tags[RECOVERED_FROM_TAG] == old_id


def test_a_run_in_progress_is_refused(store, tmp_path):
    run_dir = tmp_path / "run"
    finished_run(store, run_dir, "recover-busy")
    holder = hold_lock_in_child(run_dir)
    try:
        with pytest.raises(TrackingError, match=f"in use by a run in progress \\(pid {holder.pid}\\)"):
            recover_run(run_dir, store, "recover-busy")
    finally:
        holder.kill()
        holder.wait()


def recover_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "framework.tracking.recover", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    empty = recover_cli(tmp_path, "--uri", f"sqlite:///{tmp_path}/x.db")
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1 and "metrics.jsonl" in empty.stderr
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0, "val/loss": 1.0}\n')
    (tmp_path / "blocker").write_text("a file where the store's folder should be")
    broken = recover_cli(tmp_path, "--uri", f"sqlite:///{tmp_path}/blocker/mlflow.db")
    assert broken.returncode == 2, broken.stderr[-2000:]
    assert broken.stderr.startswith("error: cannot recover") and broken.stderr.count("\n") == 1, broken.stderr
    assert "Traceback" not in broken.stderr


def test_cli_reports_what_it_did(tmp_path, store):
    run_dir = tmp_path / "run"
    run_id = finished_run(store, run_dir, "recover-cli")
    result = recover_cli(run_dir, "--uri", store)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"into MLflow run {run_id}" in result.stdout and "0 metric points (21 already there)" in result.stdout
    assert "status FINISHED" in result.stdout
