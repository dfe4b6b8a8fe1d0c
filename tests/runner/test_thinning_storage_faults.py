"""A write of the thinned model or its ONNX export that fails (a full disk, a file where its folder
should be) is one line, exit 2, the MLflow run FAILED, no partial file left; resume=auto then
finishes the run (issue 21 item 6)."""

from __future__ import annotations

import shutil

import pytest
from cli_in_process import run_main
from mlflow.tracking import MlflowClient
from support import cli_dirs

BASE = ["pruner=agp_filter", "model.width=0.5", "epochs=1"]


def only_run(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    [experiment] = [e for e in client.search_experiments() if e.name != "Default"] or client.search_experiments()
    [run] = client.search_runs([experiment.experiment_id])
    return run


@pytest.mark.slow
@pytest.mark.parametrize("blocker", ["thinned folder is a file", "model.onnx is a folder"])
def test_a_failed_write_of_the_thinned_model_is_one_line_and_resume_finishes_it(tmp_path, blocker):
    thinned = tmp_path / "run" / "thinned"
    if blocker == "thinned folder is a file":
        thinned.parent.mkdir(parents=True)
        thinned.write_text("in the way\n")
    else:
        (thinned / "model.onnx").mkdir(parents=True)
    result = run_main([*BASE, *cli_dirs(tmp_path)])
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert errors[0].startswith(f"error: cannot write the thinned model in {thinned}") and "resume=auto" in errors[0]
    if thinned.is_dir():  # the export had written model.pt, thinned.onnx and dense.onnx: all removed
        assert sorted(p.name for p in thinned.iterdir()) == ["model.onnx"]
    assert only_run(tmp_path).info.status == "FAILED"

    # the disk is freed: resume=auto thins again and finishes the same MLflow run
    if thinned.is_file():
        thinned.unlink()
    else:
        shutil.rmtree(thinned / "model.onnx")
    resumed = run_main([*BASE, "resume=auto", *cli_dirs(tmp_path)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (thinned / "model.pt").is_file() and (thinned / "model.onnx").is_file()
    run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and "thin/val_top1" in run.data.metrics
