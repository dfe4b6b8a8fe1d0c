"""The MLflow tracker against real stores: a temporary SQLite file, and a server on 127.0.0.1."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient
from mlflow_server import MlflowServer, free_port
from support import metrics_file, tracking_hook
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from framework.errors import TrackingError
from framework.run_context import RunContext
from framework.tracking.metrics_file import read_metrics
from framework.tracking.mlflow_tracker import MLflowTracker
from framework.tracking.recover import recover
from framework.training import Hook, Trainer


def tiny_trainer(hooks, epochs=3):
    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = nn.Linear(4, 3)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, loader, epochs=epochs, hooks=hooks)


def make_tracker(uri, run_dir, **kw):
    run_dir.mkdir(parents=True, exist_ok=True)
    return MLflowTracker(
        uri=uri,
        experiment="tests",
        artifact_location=None,
        context=RunContext(run_dir),
        params={"optimizer.lr": "0.1"},
        tags={"hydra.overrides": "x=1"},
        run_name="x=1",
        log_model=False,
        **kw,
    )


def test_unreachable_server_fails_fast_with_one_line(tmp_path, caplog):
    hook = make_tracker(f"http://127.0.0.1:{free_port()}", tmp_path)
    with pytest.raises(TrackingError) as error:
        hook.connect()
    # failed at the first call: MLflow's own retries (about 4 minutes) log one warning each
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]
    message = str(error.value)
    assert "\n" not in message and "tracking.uri=" in message and "tracking=none" in message


def test_metrics_params_and_status_in_a_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    hook = make_tracker(uri, tmp_path / "run")
    tiny_trainer([tracking_hook(hook)], epochs=3).fit()
    client = MlflowClient(uri)
    run = client.get_run(hook.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.lr"] == "0.1"
    assert run.data.tags["hydra.overrides"] == "x=1"
    assert run.data.tags["mlflow.runName"] == "x=1"
    history = client.get_metric_history(hook.run_id, "val/loss")
    assert [m.step for m in history] == [0, 1, 2]


class KillServerAfterEpoch(Hook):
    def __init__(self, server, epoch):
        self.server, self.epoch = server, epoch

    def after_epoch(self, trainer):
        if trainer.epoch == self.epoch:
            self.server.stop()


def test_logging_failing_mid_run_keeps_training_and_every_metric(tmp_path, caplog):
    server = MlflowServer(tmp_path / "server").start()
    try:
        run_dir = tmp_path / "run"
        hook = make_tracker(server.uri, run_dir)
        hook.connect()
        # The server dies after epoch 1 is logged: epochs 2..4 can only reach the local file.
        trainer = tiny_trainer(
            [tracking_hook(metrics_file(run_dir, 5), hook), KillServerAfterEpoch(server, 1)], epochs=5
        )
        history = trainer.fit()
        assert len(history) == 5
        assert hook.failed_calls >= 3
        assert any("training continues" in r.getMessage() for r in caplog.records)
        local = read_metrics(run_dir / "metrics.jsonl")
        assert [r["epoch"] for r in local] == [0, 1, 2, 3, 4]
        assert [r["val/loss"] for r in local] == [h["val/loss"] for h in history]

        # Recovery as the README says: replay metrics.jsonl into the same run, here straight into
        # the store behind the dead server (restarting it would only cost time).
        store = f"sqlite:///{tmp_path}/server/server.db"
        recover(run_dir, store)
        values = MlflowClient(store).get_metric_history(hook.run_id, "val/loss")
        assert sorted({m.step for m in values}) == [0, 1, 2, 3, 4]
    finally:
        server.stop()


def test_ctrl_c_inside_a_store_write_still_marks_the_run_killed(tmp_path):
    """The signal is sent from inside the store's write of epoch 1's metrics (its INSERT done, its
    commit not yet), every time. Once it cut that SQLite transaction in half: the lock stayed
    held, end_run failed with "database is locked" and the run stayed RUNNING (a flaky CI test)."""
    import os
    import signal

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    inserts = []

    def interrupt_the_second_metrics_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO METRICS"):
            inserts.append(statement)
            if len(inserts) == 2:
                os.kill(os.getpid(), signal.SIGINT)

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    hook = make_tracker(uri, tmp_path / "run")
    event.listen(Engine, "after_cursor_execute", interrupt_the_second_metrics_insert)
    # Ctrl-C as in a terminal: a suite started in the background inherits an ignored SIGINT
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            tiny_trainer([tracking_hook(metrics_file(tmp_path / "run", 5), hook)], epochs=5).fit()
    finally:
        signal.signal(signal.SIGINT, inherited)
        event.remove(Engine, "after_cursor_execute", interrupt_the_second_metrics_insert)
    assert len(inserts) == 2  # the signal came from inside the write of epoch 1
    run = MlflowClient(uri).get_run(hook.run_id)
    assert run.info.status == "KILLED"
    # the interrupted write was completed before the interrupt: epoch 1 is in the store
    assert [m.step for m in MlflowClient(uri).get_metric_history(hook.run_id, "val/top1")] == [0, 1]
