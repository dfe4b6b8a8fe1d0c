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


class CsvTracker:
    """A tracker written against framework.tracking.Tracker: every call of the run, one CSV line
    each, in <run dir>/<filename>; the runner passes ``run``."""

    def __init__(self, run, filename: str = "tracked.csv"):
        self.path = run.context.run_dir / filename
        self.task = run.task
        self.model = run.params["model"]["_target_"]

    def _write(self, *row):
        with self.path.open("a", newline="") as file:
            csv.writer(file).writerow([self.task, self.model, *row])

    def start(self, step):
        self._write("start", step, "", "")

    def log_metrics(self, metrics, step):
        for name, value in metrics.items():
            self._write("metric", step, name, repr(float(value)))

    def log_files(self, files):
        for file in files:
            self._write("file", "", file.folder, file.path.name)

    def log_model(self, model):
        self._write("model", "", model.name, model.onnx.name)

    def finish(self, status, error=None):
        self._write("finish", "", status, "")

    def where(self):
        return [f"CSV tracker: {self.path}"]
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
    (project / "conf" / "tracking" / "csv.yaml").write_text("_target_: my_tracker.CsvTracker\nfilename: tracked.csv\n")
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


def _tracked(run_dir: Path) -> list[list[str]]:
    import csv

    with (run_dir / "tracked.csv").open(newline="") as file:
        return list(csv.reader(file))


def _metrics(rows) -> dict[tuple[int, str], float]:
    return {(int(step), name): float(value) for _, _, kind, step, name, value in rows if kind == "metric"}


def test_own_tracker_from_a_folder_outside_the_repo_tracks_train_sensitivity_and_eval(my_project, tmp_path):
    """A user's CSV tracker (framework.tracking.Tracker, through --config-dir) under all three
    tasks: each logs real steps through the protocol, and the end-of-run block prints its line."""
    import csv
    import subprocess
    import sys

    from support import ROOT

    from framework.tracking.metrics_file import read_metrics

    base = ["--config-dir", "my_project/conf", "model=my_net", "dataset=stripes", "tracking=csv", "progress=false"]

    def run(task_args, name):
        result = run_cli([*base, *task_args, f"hydra.run.dir={tmp_path}/{name}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"  CSV tracker: {tmp_path / name / 'tracked.csv'}" in (result.stdout + result.stderr).splitlines()
        rows = _tracked(tmp_path / name)
        assert {(r[0], r[1]) for r in rows} == {(task_args[0].split("=")[1], "my_net.MyNet")}  # the run's params
        assert rows[0][2:] == ["start", "0", "", ""] and rows[-1][2:] == ["finish", "", "FINISHED", ""]
        return rows

    # task=train: a step is an epoch; the files and the deploy step's model at the end
    rows = run(["task=train", "epochs=2"], "train")
    expected = {
        (e["epoch"], k): float(v)
        for e in read_metrics(tmp_path / "train" / "metrics.jsonl")
        for k, v in e.items()
        if k != "epoch"
    }
    assert _metrics(rows) == expected and {epoch for epoch, _ in expected} == {0, 1}
    assert {"val/top1", "train/loss", "deploy/val_top1/fused_onnx_fp32"} <= {name for _, name in expected}
    files = {(folder, name) for _, _, kind, _, folder, name in rows if kind == "file"}
    assert {("checkpoints", "last.pt"), ("", "metrics.jsonl"), ("deploy", "variants.csv"), ("hydra", ".hydra")} <= files
    assert [r[4:] for r in rows if r[2] == "model"] == [["model", "model.onnx"]]
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "train" / "mlflow_run_id").exists()

    checkpoint = tmp_path / "train" / "checkpoints" / "last.pt"
    # task=sensitivity: step 0 the dense model, step i the i-th level
    rows = run(["task=sensitivity", "pruner=level", "sensitivity.levels=[0.25,0.75]", f"pretrained={checkpoint}"], "s")
    logged = _metrics(rows)
    assert logged[(1, "sensitivity/level")] == 0.25 and logged[(2, "sensitivity/level")] == 0.75
    assert {step for step, _ in logged} == {0, 1, 2} and (0, "sensitivity/dense_top1") in logged
    with (tmp_path / "s" / "sensitivity" / "sensitivity.csv").open(newline="") as file:
        units = {row["unit"] for row in csv.DictReader(file)} - {"(dense)"}
    assert len(units) == 3  # the two convolutions and the classifier (pruner.structure=fine)
    at_level = {f"sensitivity/{unit}/top1" for unit in units}
    assert {name for step, name in logged if step == 2} == {"sensitivity/level", *at_level}
    assert ("sensitivity", "sensitivity") in {(r[4], r[5]) for r in rows if r[2] == "file"}

    # task=eval: one step, the evaluation
    rows = run(["task=eval", f"pretrained={checkpoint}"], "eval")
    final = read_metrics(tmp_path / "train" / "metrics.jsonl")[-1]
    assert _metrics(rows) == {(0, k): final[k] for k in ("val/loss", "val/top1", "val/top5")}

    # recovery replays into MLflow: a run tracked by another tracker is refused in one line
    recover = subprocess.run(
        [sys.executable, "-m", "framework.tracking.recover", str(tmp_path / "train")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert recover.returncode == 2
    assert recover.stderr.strip().splitlines() == [recover.stderr.strip()]
    assert "tracking._target_=my_tracker.CsvTracker" in recover.stderr and "--uri" in recover.stderr
