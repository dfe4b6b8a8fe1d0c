"""Sweeps as a user runs them (``python run.py -m ...``) with the real Hydra plugins and a real
MLflow store: parent and child runs, failed jobs and exit status under each launcher, Optuna."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_in_process import run_main
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from support import HANG_S, ROOT, cli_dirs, run_cli

FAST = ["epochs=1", "tracking.log_model=false"]


def sweep_runs(uri: str, experiment: str = "secateurs"):
    """(parent run, child runs by job number) of the one sweep in ``experiment``."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = {int(r.data.tags["hydra.job.num"]): r for r in runs if r is not parents[0]}
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children.values())
    return client, parents[0], children


def failure_lines(stderr: str):
    return [line for line in stderr.splitlines() if line.startswith("error: job ")]


@pytest.mark.slow
def test_joblib_sweep_on_a_fresh_store_nests_every_job_under_one_parent_with_a_summary(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert not (tmp_path / "mlflow.db").exists()
    # a process of its own: joblib's worker processes outlive a run (loky reuses them), so in-process
    # they would write to the output of whichever test started them, and the job lines are checked here
    result = run_cli(
        [
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "pruner=agp,agp_filter",
            "fold_batchnorm=true",
            *FAST,
            *cli_dirs(tmp_path, fresh_store=True),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, parent, children = sweep_runs(uri)
    assert sorted(children) == [0, 1]
    assert {r.info.status for r in children.values()} == {"FINISHED"} and parent.info.status == "FINISHED"
    # names: the swept key first, values as the user typed them
    assert children[0].info.run_name == "pruner=agp,fold_batchnorm=true,epochs=1"
    assert children[1].data.params["pruner.structure"] == "filter"
    tags = parent.data.tags
    assert tags["sweep.launcher"] == "JoblibLauncher" and tags["sweep.sweeper"] == "BasicSweeper"
    assert "pruner=agp,agp_filter" in tags["sweep.overrides"] and tags["sweep.dir"] == str(tmp_path / "multirun")
    assert client.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "summary")} == {
        "summary/sweep_summary.csv",
        "summary/sweep_summary.md",
        "summary/sweep_pareto.png",
        "summary/sweep_pareto.html",
    }
    assert parent.data.metrics["sweep/jobs_finished"] == 2
    # the summary is printed, and each parallel job's log lines carry its number
    assert "| job | status | pruner |" in result.stdout and "Pareto front of val/top1" in result.stdout
    assert "[job 0]" in result.stdout and "[job 1]" in result.stdout

    # rebuilt from the parent run id alone (into another folder), then from the sweep dir
    rebuilt = subprocess.run(
        [
            sys.executable,
            "-m",
            "framework.sweeps.report",
            parent.info.run_id,
            "--uri",
            uri,
            "--out",
            str(tmp_path / "again"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    again = (tmp_path / "again" / "sweep_summary.md").read_text()
    original = (tmp_path / "multirun" / "summary" / "sweep_summary.md").read_text()
    assert again.split("| job |")[1].split("\n\n")[0].count("FINISHED") == 2
    assert [line for line in again.splitlines() if line.startswith("Pareto")] == [
        line for line in original.splitlines() if line.startswith("Pareto")
    ]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_failed_job_makes_the_sweep_exit_non_zero_and_is_named(tmp_path, launcher):
    result = run_main(["-m", f"hydra/launcher={launcher}", "optimizer.lr=0.05,1e30", *FAST, *cli_dirs(tmp_path)])
    assert result.returncode == 1, result.stderr[-3000:]
    lines = failure_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: job 1 (optimizer.lr=1e+30 epochs=1") and "training loss became nan" in lines[0]
    _, parent, children = sweep_runs(f"sqlite:///{tmp_path}/mlflow.db")
    assert children[0].info.status == "FINISHED" and children[1].info.status == "FAILED"
    assert parent.info.status == "FAILED" and parent.data.tags["sweep.failed_jobs"] == "1"


@pytest.mark.slow
def test_optuna_preset_completes_its_trials_and_reports_the_best_value(tmp_path):
    result = run_main(["-m", "hparams_search=optuna_lr_wd", "hydra.sweeper.n_trials=3", *FAST, *cli_dirs(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    best = OmegaConf.load(tmp_path / "multirun" / "optimization_results.yaml")
    _, parent, children = sweep_runs(f"sqlite:///{tmp_path}/mlflow.db")
    assert len(children) == 3
    assert best.best_value == max(r.data.metrics["val/top1"] for r in children.values())
    assert f"Best value (Optuna): {best.best_value:.4f}" in result.stdout
    assert parent.data.tags["sweep.swept_keys"] == "optimizer.lr,optimizer.weight_decay"
    assert sorted(parent.data.tags["sweep.swept_keys"].split(",")) == sorted(best.best_params)
    # the parent's row shows the best job under the children's columns
    best_child = children[int(parent.data.tags["sweep.best_job"])]
    assert parent.data.metrics["val/top1"] == best.best_value == best_child.data.metrics["val/top1"]
    assert parent.data.tags["sweep.best_run_id"] == best_child.info.run_id
    assert parent.data.params["optimizer.lr"] == best_child.data.params["optimizer.lr"]


@pytest.mark.slow
def test_nsga2_preset_reports_the_pareto_front_of_accuracy_and_sparsity(tmp_path):
    result = run_main(
        ["-m", "hparams_search=nsga2_sparsity_lr", "hydra.sweeper.n_trials=3", *FAST, *cli_dirs(tmp_path)]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    solutions = OmegaConf.load(tmp_path / "multirun" / "optimization_results.yaml").solutions
    _, _, children = sweep_runs(f"sqlite:///{tmp_path}/mlflow.db")
    points = {
        (round(r.data.metrics["val/top1"], 6), round(r.data.metrics["sparsity/total"], 6)) for r in children.values()
    }
    assert solutions and all((round(s["values"][0], 6), round(s["values"][1], 6)) in points for s in solutions)
    assert "Optuna's Pareto front" in result.stdout


@pytest.mark.slow
def test_a_trial_whose_metric_is_missing_fails_and_is_never_a_number(tmp_path):
    result = run_main(
        [
            "-m",
            "hparams_search=optuna_lr_wd",
            "hydra.sweeper.n_trials=2",
            "optimized_metric=val/top9",
            *FAST,
            *cli_dirs(tmp_path),
        ]
    )
    assert result.returncode == 1
    lines = failure_lines(result.stderr)
    assert len(lines) == 2 and all("optimized_metric='val/top9' was not logged" in line for line in lines), (
        result.stderr[-3000:]
    )
    assert not (tmp_path / "multirun" / "optimization_results.yaml").exists()  # no best value from nothing


@pytest.mark.slow
def test_a_sweep_resumed_in_its_dir_continues_its_parent_and_each_jobs_own_child_run(tmp_path):
    args = ["-m", "optimizer.lr=0.05", "epochs=1", "tracking.log_model=false", *cli_dirs(tmp_path)]
    first = run_main(args)
    assert first.returncode == 0, first.stderr[-3000:]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _, parent, children = sweep_runs(uri)
    again = run_main([*args, "resume=auto"])
    assert again.returncode == 0, again.stderr[-3000:]
    client, parent_again, children_again = sweep_runs(uri)  # still one parent, one child
    assert parent_again.info.run_id == parent.info.run_id and parent_again.info.status == "FINISHED"
    assert children_again[0].info.run_id == children[0].info.run_id
    assert children_again[0].data.tags["resumed_at_epoch"] == "1"
