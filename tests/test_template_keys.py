"""Keys a Lightning-Hydra-Template user types are answered with ours in one line (issue 29 item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_in_process import run_main
from support import cli_dirs

from framework.cli_help import template_key_problem

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.parametrize(
    "typed, ours",
    [
        ("logger=mlflow", "tracking=mlflow | none"),
        ("+logger=csv", "tracking=mlflow | none"),  # Hydra's "+X=" hint, followed
        ("logger.mlflow.tracking_uri=http://x:5000", "tracking.uri="),
        ("callbacks=default", "checkpoints (last.pt, best.pt by optimized_metric)"),
        ("callbacks.early_stopping.patience=3", "here: early_stopping.patience=3"),
        ("callbacks.early_stopping=default", "early_stopping.patience=N early_stopping.min_delta=D"),
        ("callbacks.early_stopping.monitor=val/loss", "here: optimized_metric=val/loss"),
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


def test_the_command_answers_a_template_key_before_hydra_with_one_line_and_exit_2(tmp_path):
    """Not Hydra's "use +trainer.max_epochs=..." hint, which cannot work here."""
    result = run_main(["trainer.max_epochs=3", *cli_dirs(tmp_path)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == "error: trainer.max_epochs=3 is Lightning-Hydra-Template's spelling; here: epochs=3"
    assert not (tmp_path / "run").exists()


def test_print_config_logs_the_composed_config_at_the_start(run_experiment, tmp_path, caplog):
    """extras.print_config=true is the template's spelling; print_config=true ours (issue 29 item 10)."""
    import logging

    caplog.set_level(logging.INFO, logger="framework.runner.recipe")
    run_experiment(["debug=fast", "progress=false", "deploy.enabled=false", "print_config=true", "seed=7"])
    first = [r.getMessage() for r in caplog.records if r.name == "framework.runner.recipe"][0]
    assert first.startswith("config:\n") and "\nseed: 7\n" in first and "\nepochs: 1\n" in first
    caplog.clear()
    run_experiment(["debug=fast", "progress=false", "deploy.enabled=false"], tmp_path / "quiet")
    assert caplog.records and not [r for r in caplog.records if r.getMessage().startswith("config:")]
