"""task=eval: a run's checkpoint or thinned model evaluated on the val split, logged as a run."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from support import store_overrides

from framework.config import config_problems
from framework.errors import CheckpointError
from framework.tracking.metrics_file import read_metrics

FAST = ["debug=fast", "progress=false"]


@pytest.mark.slow
def test_eval_of_a_thinned_model_and_of_best_pt_gives_the_training_run_s_figures(
    run_experiment, tracking_overrides, shared_store, tmp_path
):
    _, trained, _ = run_experiment([*FAST, "pruner=agp_filter"], run_dir=tmp_path / "train")
    (epoch,) = read_metrics(trained.run_dir / "metrics.jsonl")

    thinned = trained.run_dir / "thinned" / "model.pt"
    _, context, metrics = run_experiment(
        [*FAST, *tracking_overrides, "tracking=mlflow", "task=eval", f"pretrained={thinned}"],
        run_dir=tmp_path / "eval_thinned",
    )
    assert metrics["val/top1"] == pytest.approx(epoch["thin/val_top1"])
    assert read_metrics(context.run_dir / "metrics.jsonl")[0]["val/top1"] == metrics["val/top1"]
    client = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1])
    (run,) = client.search_runs([client.get_experiment_by_name(tracking_overrides[-1].split("=", 1)[1]).experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["val/top1"] == metrics["val/top1"]
    assert run.data.params["task"] == "eval"

    best = trained.run_dir / "checkpoints" / "best.pt"
    _, _, metrics = run_experiment([*FAST, "task=eval", f"pretrained={best}"], run_dir=tmp_path / "eval_best")
    assert metrics["val/top1"] == pytest.approx(epoch["val/top1"])


def test_eval_without_a_file_or_with_a_foreign_one_is_one_line(compose_config, run_experiment, tmp_path):
    assert config_problems(compose_config(["task=eval"])) == [
        "task=eval needs pretrained=<file>; allowed: a run's checkpoint (checkpoints/best.pt, last.pt) "
        "or thinned model (thinned/model.pt)"
    ]
    foreign = tmp_path / "notes.pt"
    foreign.write_text("not a checkpoint")
    with pytest.raises(CheckpointError) as error:
        run_experiment([*FAST, "task=eval", f"pretrained={foreign}"])
    assert len(str(error.value).splitlines()) == 1 and str(foreign) in str(error.value)
