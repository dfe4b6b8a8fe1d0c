"""Keys a Lightning-Hydra-Template user types are answered with ours in one line (issue 29 item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.cli_help import template_key_problem

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.parametrize(
    "typed, ours",
    [
        ("logger=mlflow", "tracking=mlflow | none"),
        ("+logger=csv", "tracking=mlflow | none"),  # Hydra's "+X=" hint, followed
        ("logger.mlflow.tracking_uri=http://x:5000", "tracking.uri="),
        ("callbacks=default", "early_stopping.patience=N"),
        ("callbacks.early_stopping.patience=3", "early_stopping.patience=N (on optimized_metric"),
        ("callbacks.model_checkpoint.save_top_k=2", "checkpoints are always written"),
        ("trainer=gpu", "device=auto | cpu | cuda"),
        ("trainer.max_epochs=3", "here: epochs=3"),
        ("trainer.devices=4", "torchrun --nproc_per_node=N"),
        ("data=mnist", "dataset=<option>"),
        ("data.batch_size=32", "here: loader.batch_size=32"),
        ("ckpt_path=runs/a/last.pt", "task=eval pretrained=runs/a/last.pt to evaluate it, resume=runs/a/last.pt"),
        ("extras.print_config=true", "here: print_config=true"),
        ("train=false", "task=train | eval | sensitivity"),
        ("task_name=mine", "here: tracking.experiment=mine"),
        ("paths.log_dir=/tmp/logs", "here: paths.output_dir=/tmp/logs"),
        ("model.optimizer.lr=0.1", "optimizer=<option> (optimizer.lr=...)"),
    ],
)
def test_a_template_key_names_our_spelling(typed, ours):
    problem = template_key_problem(CONF, ["epochs=2", typed])
    assert problem is not None and problem.startswith(f"{typed} is Lightning-Hydra-Template's spelling; here: ")
    assert ours in problem and "\n" not in problem


@pytest.mark.parametrize(
    "ours", ["dataset=digits", "model.width=2", "paths.output_dir=/tmp/x", "tracking=none", "loader.batch_size=8"]
)
def test_our_own_keys_are_not_taken_for_the_templates(ours):
    assert template_key_problem(CONF, [ours, "pruner=agp"]) is None


def test_a_group_of_the_users_config_dir_is_theirs(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.yaml").write_text("x: 1\n")
    assert template_key_problem(CONF, ["--config-dir", str(tmp_path), "data=mine"]) is None
    assert template_key_problem(CONF, ["data=mine"]) is not None
