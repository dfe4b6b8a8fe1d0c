"""early_stopping.patience: a run whose optimized_metric stops improving ends FINISHED at the right
epoch with one line, its files whole and its last-epoch steps (thinning, deploy) done; a pruned run
counts only from its final sparsity; the counter survives a resume; bad values are one line."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from cli_in_process import run_main
from support import cli_dirs

from framework.config import config_problems
from framework.tracking.metrics_file import read_metrics

# min_delta=1: val/top1 is at most 1, so no counted epoch after the first (which sets the best)
# improves by more than that: the stop epoch is known whatever the run learns.
RUN = [
    "early_stopping.min_delta=1",
    "tracking=none",
    "loader.batch_size=32",
    "loader.limit_train_batches=2",
    "loader.limit_val_batches=2",
]


def _stop_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("early stopping after epoch")]


def test_a_pruned_run_stops_patience_epochs_after_its_final_sparsity_thinned_and_deployed(
    run_experiment, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    overrides = [
        *RUN,
        "pruner=agp_filter",
        "epochs=8",
        "schedule.ending_epoch=2",  # prunes at epochs 0 and 1: the final sparsity from epoch 1 (0-based)
        "early_stopping.patience=2",
    ]
    _, context, _ = run_experiment(overrides)
    run_dir = context.run_dir

    # epoch 1 (0-based) is the first counted one and the best; epochs 2 and 3 do not improve
    lines = _stop_lines(caplog)
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "early stopping after epoch 4/8: val/top1 has not improved by more than 1 for 2 epoch(s)"
    )
    assert "counted from epoch 2 (the final sparsity)" in lines[0]
    metrics = read_metrics(run_dir / "metrics.jsonl")
    assert [int(m["epoch"]) for m in metrics] == [0, 1, 2, 3]
    assert json.loads((run_dir / "run_status.json").read_text())["status"] == "FINISHED"
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 4
    assert last["hooks"]["early_stopping"]["epochs_without_improvement"] == 2
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == 2  # epoch 1 (0-based), the first at the final sparsity
    # the last-epoch steps ran on the stopped epoch: thinned, deployed, at the target sparsity
    assert "thin/val_top1" in metrics[3] and (run_dir / "thinned" / "model.pt").is_file()
    assert (run_dir / "deploy" / "model.onnx").is_file()
    assert metrics[3]["pruning/target_sparsity"] == pytest.approx(0.5)


def test_the_counter_is_in_the_checkpoint_and_a_resume_continues_it(run_experiment, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    run_dir = tmp_path / "resumed" / "run"
    common = [*RUN, "deploy.enabled=false", "early_stopping.patience=3"]
    # two epochs: epoch 0 is the best, epoch 1 the first without improvement; the run ends planned
    run_experiment([*common, "epochs=2"], run_dir=run_dir)
    assert not _stop_lines(caplog)
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["hooks"]["early_stopping"]
    assert state["epochs_without_improvement"] == 1 and state["best_epoch"] == 0

    # continued to 6 epochs: a counter kept at 1 stops after epoch 4 (1-based), a reset one after 5
    run_experiment([*common, "epochs=6", "resume=auto", "resume_changed=allow"], run_dir=run_dir)
    lines = _stop_lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("early stopping after epoch 4/6"), lines
    assert "(best " in lines[0] and "at epoch 1;" in lines[0]
    assert [int(m["epoch"]) for m in read_metrics(run_dir / "metrics.jsonl")] == [0, 1, 2, 3]

    # resumed once more after the stop: nothing left to train, the files unchanged
    before = (run_dir / "metrics.jsonl").read_bytes()
    run_experiment([*common, "epochs=6", "resume=auto", "resume_changed=allow"], run_dir=run_dir)
    assert (run_dir / "metrics.jsonl").read_bytes() == before
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 4


@pytest.mark.parametrize(
    "override, key",
    [
        ("early_stopping.patience=0", "early_stopping.patience"),
        ("early_stopping.patience=2.5", "early_stopping.patience"),
        ("early_stopping.patience=true", "early_stopping.patience"),
        ("early_stopping.patience=abc", "early_stopping.patience"),
        ("early_stopping.min_delta=-0.1", "early_stopping.min_delta"),
    ],
)
def test_a_bad_early_stopping_value_is_one_line(compose_config, override, key):
    problems = config_problems(compose_config(["tracking=none", override]))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}=") and "allowed: " in problems[0]


def test_the_command_refuses_a_bad_patience_with_exit_2_before_data(tmp_path):
    result = run_main(["early_stopping.patience=0", "tracking=none", *cli_dirs(tmp_path, mlflow=False)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: early_stopping.patience=0 is invalid; allowed: null (no early stopping) or an integer >= 1 "
        "(epochs without improvement)"
    ]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
