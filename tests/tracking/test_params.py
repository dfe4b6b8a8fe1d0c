"""Config flattening, run names and the local metrics file."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from framework.config import project_root
from framework.tracking.metrics_file import read_metrics
from framework.tracking.params import flatten_config, git_commit, package_version, run_name


def test_flatten_config_uses_dotted_keys_and_keeps_odd_mappings_whole():
    cfg = OmegaConf.create(
        {
            "optimizer": {"lr": 0.05, "betas": [0.9, 0.99]},
            "fold_batchnorm": True,
            "pruner": {"final_sparsity": 0.7, "levels": {"layer1.*": 0.5}},
            "resume": None,
        }
    )
    flat = flatten_config(cfg)
    assert flat["optimizer.lr"] == "0.05"
    assert flat["optimizer.betas"] == "[0.9, 0.99]"
    assert flat["fold_batchnorm"] == "True"
    assert flat["pruner.final_sparsity"] == "0.7"
    assert json.loads(flat["pruner.levels"]) == {"layer1.*": 0.5}  # '*' is not allowed in an MLflow key
    assert flat["resume"] == "None"


def test_run_name_is_made_of_the_user_overrides():
    assert run_name(["pruner=agp", "fold_batchnorm=true", "hydra.run.dir=/x", "tracking.uri=sqlite:///y"]) == (
        "pruner=agp,fold_batchnorm=true"
    )
    assert run_name([]) == "default"


def test_an_evaluation_is_named_as_one_by_the_file_it_evaluates():
    """Not ``task=eval,pretrained=/home/...`` cut off before the file (issue 29 item 13)."""
    overrides = ["task=eval", "pretrained=/home/ana/outputs/runs/2026-11-30/02-29-52/checkpoints/best.pt", "debug=fast"]
    assert run_name(overrides, task="eval") == "eval 02-29-52/checkpoints/best.pt debug=fast"
    assert run_name(["task=sensitivity"], task="sensitivity") == "sensitivity"


def test_the_package_version_is_recorded_for_runs_outside_a_checkout():
    from importlib.metadata import version

    assert package_version() == version("secateurs")


def test_git_commit_of_this_checkout():
    commit = git_commit(project_root())
    assert commit is None or len(commit.split("-")[0]) == 40


def test_metrics_file_keeps_the_last_record_per_epoch_and_skips_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"epoch": 0, "val/top1": 0.5}\n{"epoch": 1, "val/top1": 0.6}\n'
        '{"epoch": 1, "val/top1": 0.7}\n{"epoch": 2, "val/to'
    )
    assert read_metrics(path) == [{"epoch": 0, "val/top1": 0.5}, {"epoch": 1, "val/top1": 0.7}]
