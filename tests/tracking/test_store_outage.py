"""A tracking store that breaks for good mid-run (its SQLite file deleted): one warning line per
kind of failure instead of a SQLAlchemy traceback per call; metrics.jsonl keeps everything."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from support import HANG_S, cli_dirs, metrics_file, tracking_hook
from test_reliability import start_cli, wait_for_epochs
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from framework.run_context import RunContext
from framework.tracking.metrics_file import read_metrics
from framework.tracking.mlflow_tracker import MLflowTracker
from framework.training import Hook, Trainer

# Every config key the CLI test here sets, in one place (the config schema is being reshaped).
CLI_OVERRIDES = ["epochs=4", "tracking.log_model=false", "tracking.experiment=outage"]


class DeleteFileAfterEpoch(Hook):
    def __init__(self, path, epoch):
        self.path, self.epoch = path, epoch

    def after_epoch(self, trainer):
        if trainer.epoch == self.epoch:
            os.remove(self.path)


def test_a_deleted_sqlite_store_warns_once_per_kind_and_keeps_every_metric(tmp_path, caplog):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    hook = MLflowTracker(
        uri=f"sqlite:///{tmp_path}/mlflow.db",
        experiment="outage",
        artifact_location=None,
        context=RunContext(run_dir),
        params={},
        tags={},
        run_name="x",
        log_model=False,
    )
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = nn.Linear(4, 3)
    # The metrics file is written before MLflow's, the deleting hook after both: epoch 0 reaches the store.
    hooks = [tracking_hook(metrics_file(run_dir, 5), hook), DeleteFileAfterEpoch(tmp_path / "mlflow.db", 0)]
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, loader, epochs=5, hooks=hooks)
    with caplog.at_level(logging.DEBUG):
        trainer.fit()
    assert hook.failed_calls == 5  # log_metrics of epochs 1..4, end_run
    ours = [r for r in caplog.records if r.name == "framework.tracking.mlflow_tracker"]
    assert [r.levelno for r in ours] == [logging.WARNING, logging.WARNING], [r.getMessage() for r in ours]
    assert "log_metrics failed (OperationalError: attempt to write a readonly database)" in ours[0].getMessage()
    assert "5 MLflow call(s) failed" in ours[1].getMessage() and "framework.tracking.recover" in ours[1].getMessage()
    assert not [
        r
        for r in caplog.records
        if r.name.startswith(("sqlalchemy", "alembic", "mlflow.store")) and r.levelno >= logging.WARNING
    ]
    assert [r["epoch"] for r in read_metrics(run_dir / "metrics.jsonl")] == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_cli_store_deleted_mid_run_gives_no_traceback_and_one_line_per_kind(tmp_path):
    process = start_cli([*CLI_OVERRIDES, *cli_dirs(tmp_path)])
    wait_for_epochs(tmp_path / "run" / "metrics.jsonl", 1, process)
    os.remove(tmp_path / "mlflow.db")
    stdout, stderr = process.communicate(timeout=HANG_S)
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr and "sqlalchemy" not in stderr.lower(), stderr[-3000:]
    output = (stdout + stderr).splitlines()
    kinds = [line for line in output if "further failures of this kind are not shown" in line]
    summaries = [line for line in output if "MLflow call(s) failed in this run" in line]
    # Normally one kind ("attempt to write a readonly database"); a deletion that lands inside a
    # write may add a second: never one line per failed call (there are 4 or 5).
    assert 1 <= len(kinds) <= 2 and len({k.split("failed (")[1] for k in kinds}) == len(kinds), kinds
    assert any("attempt to write a readonly database" in k for k in kinds), kinds
    assert len(summaries) == 1 and "framework.tracking.recover" in summaries[0]
    assert len([line for line in output if "MLflow" in line and "failed" in line]) == len(kinds) + 1
    assert [r["epoch"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [0, 1, 2, 3]
