"""A user's own model, dataset, optimizer and criterion, kept outside this repository, run as
the README shows: ``python run.py --config-dir my_project/conf model=my_net ...``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from support import HANG_S, cli_dirs, run_cli, store_overrides

MY_NET = '''
from torch import nn


class MyNet(nn.Module):
    """Two Conv-BN-ReLU blocks and a classifier; the runner passes num_classes and in_channels."""

    def __init__(self, num_classes: int, in_channels: int, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(self.features(x))
'''

MY_DATA = '''
import torch
from torch.utils.data import TensorDataset


class Stripes:
    """Images of horizontal or vertical stripes; described before it is loaded."""

    num_classes = 2

    def __init__(self, size: int = 6, count: int = 64):
        self.size, self.count = size, count
        self.input_shape = (1, size, size)

    def load(self):
        generator = torch.Generator().manual_seed(0)
        labels = torch.randint(2, (self.count,), generator=generator)
        stripes = (torch.arange(self.size) % 2).float()
        images = torch.where(labels.view(-1, 1, 1) == 0, stripes.view(-1, 1), stripes.view(1, -1))
        images = images + 0.1 * torch.randn(self.count, self.size, self.size, generator=generator)
        data = TensorDataset(images.unsqueeze(1), labels)
        return data, data
'''

MY_CRITERION = '''
import torch

from framework.pruning import Criterion


class MaxAbs(Criterion):
    """A group is as important as its largest weight."""

    def __call__(self, groups: torch.Tensor) -> torch.Tensor:
        return groups.abs().amax(dim=1)
'''

MY_TRACKER = '''
import csv

from framework.training import Hook


class CsvLogger(Hook):
    """One line per (epoch, metric) in <run dir>/<filename>; the runner passes ``run``."""

    def __init__(self, run, filename: str = "metrics.csv"):
        self.path = run.run_dir / filename
        self.model = run.params["model"]["_target_"]

    def before_run(self, trainer):
        with self.path.open("w", newline="") as file:
            csv.writer(file).writerow(["model", "epoch", "metric", "value"])

    def after_epoch(self, trainer):
        with self.path.open("a", newline="") as file:
            writer = csv.writer(file)
            for name, value in trainer.epoch_metrics.items():
                writer.writerow([self.model, trainer.epoch, name, repr(float(value))])
'''


@pytest.fixture
def my_project(tmp_path) -> Path:
    project = tmp_path / "my_project"
    (project / "conf" / "model").mkdir(parents=True)
    (project / "conf" / "dataset").mkdir(parents=True)
    (project / "my_net.py").write_text(textwrap.dedent(MY_NET))
    (project / "my_data.py").write_text(textwrap.dedent(MY_DATA))
    (project / "my_criterion.py").write_text(textwrap.dedent(MY_CRITERION))
    (project / "conf" / "model" / "my_net.yaml").write_text("_target_: my_net.MyNet\nwidth: 8\n")
    (project / "conf" / "dataset" / "stripes.yaml").write_text("_target_: my_data.Stripes\nsize: 6\ncount: 64\n")
    (project / "my_tracker.py").write_text(textwrap.dedent(MY_TRACKER))
    (project / "conf" / "tracking").mkdir(parents=True)
    (project / "conf" / "tracking" / "csv.yaml").write_text("_target_: my_tracker.CsvLogger\nfilename: epochs.csv\n")
    return project


@pytest.mark.slow
def test_own_model_dataset_optimizer_and_criterion_from_a_folder_outside_the_repo(my_project, tmp_path):
    result = run_cli(
        [
            "--config-dir",
            "my_project/conf",
            "model=my_net",
            "dataset=stripes",
            "pruner=agp_filter",
            "fold_batchnorm=true",
            "epochs=2",
            "optimizer=adam",
            "optimizer._target_=torch.optim.RAdam",
            "pruner.criterion._target_=my_criterion.MaxAbs",
            *cli_dirs(tmp_path),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    weights = state["model"]
    # agp_filter at 0.5 (one-shot at epoch 0 with epochs=2), thinned at the end: half of each
    # conv's filters are gone, with their BatchNorm channels and the classifier's columns.
    assert weights["features.0.weight"].shape[0] == 4 and weights["features.1.weight"].shape == (4,)
    assert weights["features.3.weight"].shape[:2] == (8, 4)
    assert weights["head.weight"].shape == (2, 8)  # the classes are never pruned
    assert state["hooks"]["thinning"]["recipe"]["modules"]["head"]["in_features"] == 8

    client = MlflowClient(store_overrides(tmp_path)[0].split("=", 1)[1])
    [experiment] = [e for e in client.search_experiments() if e.name == "secateurs"]
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model._target_"] == "my_net.MyNet"
    assert params["dataset._target_"] == "my_data.Stripes"
    assert params["optimizer._target_"] == "torch.optim.RAdam"
    assert params["pruner.criterion._target_"] == "my_criterion.MaxAbs"
    assert run.data.tags["fold_batchnorm.folded_layers"] == "2"
    assert run.data.metrics["thin/params/thinned"] < run.data.metrics["thin/params/dense"] / 2


def test_own_target_by_override_and_its_mistakes_are_one_line(my_project, tmp_path):
    base = ["--config-dir", "my_project/conf", "dataset=stripes", "tracking=none", *cli_dirs(tmp_path, mlflow=False)]
    unknown = run_cli([*base, "model._target_=my_net.MyNet", "+model.widht=2"], cwd=tmp_path)
    assert unknown.returncode == 2
    lines = unknown.stderr.strip().splitlines()
    # One line per mistake: the misspelt key, and simple_cnn's float width that MyNet types as int.
    assert lines[-2:] == [
        "error: model.widht is not an argument of my_net.MyNet; accepted: width",
        "error: model.width=1.0 has the wrong type for my_net.MyNet; expected int",
    ]
    wrong = run_cli([*base, "model=my_net", "optimizer._target_=torch.optim.RAdam"], cwd=tmp_path)
    assert wrong.returncode == 2
    assert "error: optimizer.momentum is not an argument of torch.optim.RAdam; accepted: lr, betas, eps" in wrong.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before any training


def test_own_tracker_from_a_folder_outside_the_repo_logs_every_epoch(my_project, tmp_path):
    import csv
    import subprocess
    import sys

    from support import ROOT

    from framework.tracking.metrics_file import read_metrics

    result = run_cli(
        [
            "--config-dir",
            "my_project/conf",
            "model=my_net",
            "dataset=stripes",
            "tracking=csv",
            "epochs=2",
            f"hydra.run.dir={tmp_path}/run",
            "progress=false",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "run" / "epochs.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    logged = {(int(r["epoch"]), r["metric"]): float(r["value"]) for r in rows}
    expected = {
        (e["epoch"], k): float(v)
        for e in read_metrics(tmp_path / "run" / "metrics.jsonl")
        for k, v in e.items()
        if k != "epoch"
    }
    assert {epoch for epoch, _ in logged} == {0, 1} and {"val/top1", "train/loss"} <= {m for _, m in logged}
    assert logged == expected and len(expected) > 10
    assert {r["model"] for r in rows} == {"my_net.MyNet"}  # the run's params reach the tracker
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "run" / "mlflow_run_id").exists()

    # recovery replays into MLflow: a run tracked by another tracker is refused in one line
    recover = subprocess.run(
        [sys.executable, "-m", "framework.tracking.recover", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert recover.returncode == 2
    assert recover.stderr.strip().splitlines() == [recover.stderr.strip()]
    assert "tracking._target_=my_tracker.CsvLogger" in recover.stderr and "--uri" in recover.stderr
