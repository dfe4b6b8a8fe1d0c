"""The app as a user runs it: ``python run.py ...``, in the test's process (cli_in_process.run_main:
the same checks, output and exit code) and once in a subprocess of its own."""

from __future__ import annotations

import pytest
from cli_in_process import run_main
from mlflow.tracking import MlflowClient
from support import cli_dirs, run_cli


@pytest.mark.slow
def test_multirun_logs_one_run_per_job_into_one_experiment(tmp_path):
    result = run_main(
        [
            "-m",
            "optimizer.lr=0.1,0.05",
            "epochs=2",
            "tracking.log_model=false",
            "tracking.experiment=sweep",
            *cli_dirs(tmp_path),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("epoch 2/2 train/loss=") == 2  # one progress line per epoch and job
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("sweep")
    everything = client.search_runs([experiment.experiment_id])
    runs = [r for r in everything if "mlflow.parentRunId" in r.data.tags]  # the jobs, nested under the sweep's run
    assert len(everything) == len(runs) + 1
    assert sorted(r.data.params["optimizer.lr"] for r in runs) == ["0.05", "0.1"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.info.run_name for r in runs) == ["optimizer.lr=0.05,epochs=2", "optimizer.lr=0.1,epochs=2"]
    for run in runs:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val/top1")] == [0, 1]
        # the composed Hydra config travels with the run
        assert {a.path for a in client.list_artifacts(run.info.run_id, "hydra")} >= {
            "hydra/config.yaml",
            "hydra/overrides.yaml",
        }


def test_missing_cifar10_is_one_clear_line_before_any_work(tmp_path):
    result = run_main(["dataset=cifar10", f"dataset.root={tmp_path}/data", *cli_dirs(tmp_path, fresh_store=True)])
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert "dataset.root" in errors[0] and "dataset.download" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "mlflow.db").exists()  # failed before tracking started
    assert not (tmp_path / "data").exists()  # and before any download: nothing was written there


def test_unknown_key_fails_at_compose_with_hydras_short_message(tmp_path):
    # a process of its own: Hydra's message and the exit status as the interpreter leaves them
    result = run_cli(["pruner.final_sparsty=0.5", *cli_dirs(tmp_path)])
    assert result.returncode != 0
    assert "final_sparsty" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["pruner=agp", "pruner.weights=[blok2.*]"], ["blok2.*", "block2.0.weight"]),
        (["pruner=agp", "pruner.exclude=[clasifier.weight]"], ["clasifier.weight", "classifier.weight"]),
        (["pruner=agp_filter", "pruner.weights=[block1.1.weight]"], ["block1.1.weight", "filter"]),
        (["pruner=agp", "pruner.final_sparsity=1.0"], ["pruner.final_sparsity=1.0 is outside [0, 1)"]),
        (["pruner=agp", "epochs=5", "schedule.ending_epoch=10"], ["schedule.ending_epoch=10 is after epochs=5"]),
        (["optimizer.lr=-0.1"], ["optimizer.lr=-0.1"]),
        (["pruner=std_threshold", "pruner.std_multiplier=-1"], ["pruner.std_multiplier=-1"]),
        (
            ["pruner=sensitivity"],
            ["pruner=sensitivity was renamed; use pruner=std_threshold (pruner.method=std_threshold"],
        ),
        (
            ["pruner=agp", "pruner.method=sensitivity"],
            ["pruner.method=sensitivity was renamed; use pruner=std_threshold"],
        ),
        (["pruner=level", "+pruner.levels={block9.*: 0.5}"], ["block9.*"]),
    ],
)
def test_bad_pruning_input_is_one_line_and_no_training(tmp_path, overrides, expected):
    result = run_main([*overrides, *cli_dirs(tmp_path, fresh_store=True)])
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    for fragment in expected:
        assert fragment in errors[0], errors[0]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    assert not (tmp_path / "mlflow.db").exists()  # failed before tracking started


def test_full_error_env_shows_the_traceback(tmp_path):
    result = run_main(["optimizer.lr=-0.1", *cli_dirs(tmp_path)], env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
