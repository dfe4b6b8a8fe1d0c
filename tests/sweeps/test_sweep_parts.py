"""The parts of a sweep that need no process of their own: objective, Pareto front, names, summary."""

from __future__ import annotations

import math
import os
import signal
import time

import pytest

from framework.sweeps.callback import swept_keys
from framework.sweeps.job import FailedJob
from framework.sweeps.objective import ObjectiveError, objective_value
from framework.sweeps.pareto import pareto_front
from framework.sweeps.records import FAILED, FINISHED, JobRecord, read_job_records, write_job_record
from framework.sweeps.summary import write_summary
from framework.tracking.params import run_name


def test_objective_is_the_final_value_as_a_float_or_a_list():
    final = {"val/top1": 0.9, "sparsity/total": 0.7}
    assert objective_value(final, "val/top1") == 0.9 and isinstance(objective_value(final, "val/top1"), float)
    assert objective_value(final, ["val/top1", "sparsity/total"]) == [0.9, 0.7]


@pytest.mark.parametrize("final", [{"val/top1": 0.9}, {"val/top1": 0.9, "sparsity/total": math.nan}])
def test_a_missing_or_non_finite_objective_is_an_error_not_a_number(final):
    with pytest.raises(ObjectiveError) as error:
        objective_value(final, "sparsity/total")
    assert "sparsity/total" in str(error.value) and "\n" not in str(error.value)


def test_a_failed_job_cannot_pass_for_a_number():
    failed = FailedJob(3, "training loss became nan")
    with pytest.raises(ValueError, match="job 3 failed: training loss became nan"):
        float(failed)
    with pytest.raises(TypeError):
        [float(v) for v in failed]


def test_pareto_front_keeps_the_points_no_other_beats_on_both_objectives():
    points = [(0.5, 0.95), (0.7, 0.93), (0.7, 0.90), (0.9, 0.80), (0.4, 0.94), (0.9, 0.80)]
    assert pareto_front(points, maximize=[True, True]) == [0, 1, 3, 5]
    # MACs are better low: (macs, accuracy)
    assert pareto_front([(100, 0.9), (50, 0.9), (50, 0.8), (10, 0.5)], maximize=[False, True]) == [1, 3]


def test_run_name_puts_swept_keys_first_and_writes_values_as_typed():
    name = run_name(
        ["epochs=2", "pruner=agp", "fold_batchnorm=True", "optimizer.lr=0.012345678901", "hydra.launcher.n_jobs=2"],
        swept=["fold_batchnorm", "optimizer.lr"],
    )
    assert name == "fold_batchnorm=true,optimizer.lr=0.01235,epochs=2,pruner=agp"


def test_swept_keys_come_from_sweep_overrides_and_the_sweepers_search_space():
    keys = swept_keys(
        ["pruner=agp,agp_filter", "epochs=2", "fold_batchnorm=true,false", "seed=range(3)"],
        {"optimizer.lr": "interval(0.01, 0.1)"},
    )
    assert keys == ["pruner", "fold_batchnorm", "seed", "optimizer.lr"]


def _job(tmp_path, num, status, top1=None, sparsity=None, error=None):
    run_dir = tmp_path / str(num)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(f"- pruner=agp\n- fold_batchnorm={num % 2 == 0}\n")
    metrics = {k: v for k, v in (("val/top1", top1), ("sparsity/total", sparsity)) if v is not None}
    record = JobRecord(
        num,
        ["pruner=agp", f"fold_batchnorm={num % 2 == 0}"],
        status,
        error=error,
        objective=top1,
        metrics=metrics,
        run_dir=str(run_dir),
    )
    write_job_record(record)
    return record


def test_summary_table_plot_and_page_of_a_sweep_with_a_failed_and_a_lost_job(tmp_path):
    _job(tmp_path, 0, FINISHED, 0.95, 0.5)
    _job(tmp_path, 1, FINISHED, 0.90, 0.7)
    _job(tmp_path, 2, FINISHED, 0.85, 0.6)  # beaten by job 1 on both
    _job(tmp_path, 3, FAILED, error="training loss became nan")
    (tmp_path / "4" / ".hydra").mkdir(parents=True)  # a job whose process died: no job.json
    (tmp_path / "4" / ".hydra" / "overrides.yaml").write_text("- pruner=agp_filter\n")
    records = read_job_records(tmp_path)
    assert [(r.num, r.status) for r in records] == [
        (0, FINISHED),
        (1, FINISHED),
        (2, FINISHED),
        (3, FAILED),
        (4, FAILED),
    ]
    assert "no result" in records[4].error

    summary = write_summary(records, ["fold_batchnorm"], tmp_path / "summary", "a sweep")
    assert [f.front for f in summary.fronts] == [[0, 1]]
    lines = summary.markdown.splitlines()
    row = {
        int(line.split("|")[1]): line
        for line in lines
        if line.startswith("| ") and line.split("|")[1].strip().isdigit()
    }
    assert "| true |" in row[0] and "| * |" in row[0] and "| * |" in row[1] and "| * |" not in row[2]
    assert "FAILED" in row[3] and "training loss became nan" in row[3]
    assert "3 of 5 jobs finished" in summary.markdown
    names = {p.name for p in summary.files}
    assert names == {"sweep_summary.csv", "sweep_summary.md", "sweep_pareto.png", "sweep_pareto.html"}
    assert (tmp_path / "summary" / "sweep_pareto.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "summary" / "sweep_pareto.html").read_text()
    assert page.count('<circle class="job"') == 3 and "<script>" in page
    assert "http://" not in page and "https://" not in page and "src=" not in page  # works offline
    csv_lines = (tmp_path / "summary" / "sweep_summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("job,status,fold_batchnorm,val/top1") and len(csv_lines) == 6


@pytest.mark.parametrize("value", ["''", "[]", "[val/top1,'']"])
def test_optimized_metric_must_name_metrics(compose_config, value):
    from framework.config import config_problems

    problems = config_problems(compose_config([f"optimized_metric={value}"]))
    assert [p for p in problems if p.startswith("optimized_metric=")], problems


def test_presets_pick_the_optuna_sweeper_and_the_slurm_launcher():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from support import ROOT

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=["hparams_search=nsga2_sparsity_lr", "hydra/launcher=slurm"],
                return_hydra_config=True,
            )
    finally:
        GlobalHydra.instance().clear()
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.NSGAIISampler"
    assert list(cfg.hydra.sweeper.direction) == ["maximize", "maximize"]
    assert list(cfg.optimized_metric) == ["val/top1", "sparsity/total"] and cfg.pruner.method == "agp"
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.max_num_timeout > 0
    assert "sweep" in cfg.hydra.callbacks


def test_a_second_sweep_into_a_sweep_dir_in_use_is_one_line_and_exit_2(tmp_path, capsys):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from support import ROOT

    from framework.sweeps.callback import SweepCallback, finish_sweep

    sweep_dir = tmp_path / "multirun"
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                "config", overrides=["tracking=none", f"hydra.sweep.dir={sweep_dir}"], return_hydra_config=True
            )
    finally:
        GlobalHydra.instance().clear()
    sweep_dir.mkdir()
    first = hold_sweep_dir_in_child(sweep_dir)  # the first sweep, still running
    try:
        with pytest.raises(SystemExit) as stopped:
            SweepCallback().on_multirun_start(cfg)
    finally:
        os.kill(first, signal.SIGKILL)
        os.waitpid(first, 0)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"error: hydra.sweep.dir={sweep_dir} is in use by another sweep (pid {first}); wait for it to end, "
        "or give this sweep another hydra.sweep.dir"
    ]
    assert not (sweep_dir / "sweep.json").exists()  # the first sweep's record is left alone
    # the first sweep is gone (even a SIGKILL frees the dir): the same sweep dir starts again
    SweepCallback().on_multirun_start(cfg)
    assert (sweep_dir / "sweep.json").exists()
    finish_sweep(sweep_dir)


def hold_sweep_dir_in_child(sweep_dir) -> int:
    """A forked process that locks ``sweep_dir`` as a running sweep does, until it is killed."""
    from framework.sweeps.callback import lock_sweep_dir

    ready, told = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            lock_sweep_dir(sweep_dir)
            os.write(told, b"locked")
            time.sleep(600)
        finally:
            os._exit(0)
    os.close(told)
    assert os.read(ready, 6) == b"locked"
    os.close(ready)
    return pid
