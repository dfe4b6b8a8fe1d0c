"""What users of Hydra templates expect: debug presets, tags as MLflow tags, best.pt beside last.pt."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient
from support import store_overrides

from framework.config import config_problems
from framework.tracking.metrics_file import read_metrics
from framework.training.checkpoint_hook import CheckpointHook


def test_debug_fast_runs_one_epoch_on_a_few_batches_untracked(run_experiment, compose_config):
    cfg, context, final = run_experiment(["debug=fast", "pruner=agp", "progress=false"])
    assert cfg.tracking._target_.endswith("no_tracking")
    checkpoint = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    assert checkpoint["global_step"] == cfg.loader.limit_train_batches == 5
    assert [r["epoch"] for r in read_metrics(context.run_dir / "metrics.jsonl")] == [0]
    assert final["sparsity/total"] > 0.6


@pytest.mark.slow
def test_debug_overfit_learns_the_same_few_batches(run_experiment):
    cfg, context, final = run_experiment(
        ["debug=overfit", "epochs=25", "optimizer=adam", "optimizer.lr=0.01", "progress=false"]
    )
    first = read_metrics(context.run_dir / "metrics.jsonl")[0]
    checkpoint = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["global_step"] == 25 * 2
    assert final["train/top1"] == 1.0 and final["train/loss"] < first["train/loss"] / 5


@pytest.mark.slow
def test_debug_profile_writes_a_trace_of_the_first_steps_into_the_run_folder(run_experiment):
    cfg, context, _ = run_experiment(["debug=profile", "profile_steps=3", "progress=false"])
    trace = json.loads((context.run_dir / "profile" / "trace.json").read_text())
    assert any("conv2d" in str(event.get("name", "")) for event in trace["traceEvents"])
    assert "Self CPU" in (context.run_dir / "profile" / "ops.txt").read_text()


@pytest.mark.slow
def test_tags_are_mlflow_tags_and_best_pt_is_the_best_epoch(run_experiment, tracking_overrides, shared_store):
    cfg, context, final = run_experiment(
        [
            *tracking_overrides,
            "epochs=3",
            "tags=[baseline,owner:ana]",
            "loader.limit_train_batches=4",
            "tracking.log_model=false",
            "progress=false",
            "optimized_metric=val/loss",
        ]
    )
    last = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)
    best = torch.load(context.run_dir / "checkpoints" / "best.pt", weights_only=True)
    history = [r["val/loss"] for r in read_metrics(context.run_dir / "metrics.jsonl")]
    assert best["epoch"] == history.index(min(history)) + 1 and last["epoch"] == 3
    run = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1]).get_run(
        last["hooks"]["trackers"]["mlflow"]["run_id"]
    )
    assert run.data.tags["baseline"] == "true" and run.data.tags["owner"] == "ana"
    assert not any(key.startswith("tags") or key.startswith("paths") for key in run.data.params)
    assert run.data.params["loader.limit_train_batches"] == "4"


@pytest.mark.parametrize(
    ("metric", "values", "from_epoch", "best_epochs"),
    [
        ("val/top1", [0.5, 0.7, 0.6, 0.7, 0.8], 0, [0, 1, 4]),
        ("val/loss", [0.9, 0.5, 0.6, 0.4, float("nan")], 0, [0, 1, 3]),
        # a pruned run: the dense epochs before the final sparsity never count
        ("val/top1", [0.9, 0.8, 0.5, 0.6, 0.55], 2, [2, 3]),
    ],
)
def test_best_pt_follows_the_metric_in_its_direction_from_the_given_epoch(metric, values, from_epoch, best_epochs):
    hook = CheckpointHook("unused", best_metric=metric, best_from_epoch=from_epoch)
    history = [{metric: v} for v in values]
    assert [e for e in range(len(values)) if hook.is_best(history, e)] == best_epochs


def test_a_batch_limit_below_one_is_one_line(compose_config):
    problems = config_problems(compose_config(["loader.limit_train_batches=0"]))
    assert problems == ["loader.limit_train_batches=0 is invalid; allowed: null (every batch) or an integer >= 1"]
