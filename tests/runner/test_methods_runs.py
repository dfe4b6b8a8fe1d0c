"""Data-aware criteria, sparsity training and distillation end to end: real runs into MLflow,
SIGKILL + resume=auto bit-exact, and bad input refused in one line before any data is read."""

from __future__ import annotations

import signal
import time

import pytest
import torch
from mlflow.tracking import MlflowClient
from support import cli_dirs, run_cli, store_overrides
from test_reliability import final_state, runs_of, start_cli, wait_for_epochs

from framework.errors import SecateursError

FAST = ["tracking.log_model=false", "loader.batch_size=64", "pruner.calibration_batches=2"]


def metric_history(store, run_id, key):
    client = MlflowClient(store_overrides(store)[0].split("=", 1)[1])
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.slow
def test_a_distillation_run_from_the_dense_model_into_mlflow(
    run_experiment, tracking_overrides, shared_store, tmp_path
):
    overrides = [
        *tracking_overrides,
        *FAST,
        "pruner=agp_filter",
        "pruner/criterion=taylor",
        "distill=kd",
        "epochs=3",
        "schedule.starting_epoch=1",
        "schedule.ending_epoch=3",
    ]
    _, context, final = run_experiment(overrides, run_dir=tmp_path / "kd")
    checkpoint = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)
    run_id = checkpoint["hooks"]["trackers"]["mlflow"]["run_id"]
    # the teacher exists from the first pruning epoch (1): its top-1 is logged once, KD from then on
    assert [step for step, _ in metric_history(shared_store, run_id, "distill/teacher_top1")] == [1]
    assert [step for step, _ in metric_history(shared_store, run_id, "distill/kd_loss")] == [1, 2]
    # the teacher is the dense model: never thinned although the student was
    teacher = checkpoint["hooks"]["distillation"]["teacher"]
    assert teacher["block3.0.weight"].shape[0] == 128
    assert final["sparsity/total"] > 0.3


@pytest.mark.slow
def test_a_slimming_run_logs_its_penalty_per_epoch(run_experiment, tracking_overrides, shared_store, tmp_path):
    overrides = [
        *tracking_overrides,
        *FAST,
        "regularizer=bn_l1",
        "regularizer.strength=1e-3",
        "regularizer.end_epoch=2",
        "pruner=agp_filter",
        "pruner/criterion=bn_gamma",
        "epochs=3",
        "schedule.starting_epoch=2",
        "schedule.ending_epoch=3",
    ]
    _, context, final = run_experiment(overrides, run_dir=tmp_path / "slim")
    checkpoint = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)
    values = metric_history(shared_store, checkpoint["hooks"]["trackers"]["mlflow"]["run_id"], "regularizer/value")
    assert [step for step, _ in values] == [0, 1, 2]
    assert values[0][1] > 0 and values[1][1] > 0 and values[2][1] == 0.0  # off from end_epoch=2
    assert final["sparsity/total"] > 0.3


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_exact_with_kd_a_regularizer_and_a_data_criterion(tmp_path):
    common = [
        "epochs=3",
        "tracking.log_model=false",
        "deploy.enabled=false",  # latencies measured by the deploy step are not learned state
        "loader.batch_size=64",
        "pruner.calibration_batches=2",
        "pruner=agp_filter",
        "pruner/criterion=taylor",
        "schedule.starting_epoch=1",
        "schedule.ending_epoch=3",
        "distill=kd",
        "regularizer=group_lasso",
        "pruner.thin=never",
    ]
    straight_dir = tmp_path / "straight"
    result = run_cli([*common, *cli_dirs(straight_dir), "tracking.experiment=straight"])
    assert result.returncode == 0, result.stderr[-2000:]

    crash_dir = tmp_path / "crash"
    args = [*common, *cli_dirs(crash_dir), "tracking.experiment=crash"]
    process = start_cli(args)
    wait_for_epochs(crash_dir / "run" / "metrics.jsonl", 2, process)  # past the teacher's snapshot
    time.sleep(0.15)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len((crash_dir / "run" / "metrics.jsonl").read_text().splitlines()) < 3
    resumed = run_cli([*args, "resume=auto"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    straight, straight_metrics = final_state(straight_dir / "run")
    crashed, crashed_metrics = final_state(crash_dir / "run")
    for key, value in straight["model"].items():
        assert torch.equal(value, crashed["model"][key]), key
    assert crashed_metrics == straight_metrics
    assert "distill/kd_loss" in straight_metrics[2] and straight_metrics[2]["regularizer/value"] > 0
    _, runs = runs_of(crash_dir, "crash")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            ["pruner=agp_filter", "pruner.calibration_batches=0"],
            "pruner.calibration_batches=0 is invalid; allowed: an integer >= 1",
        ),
        (["regularizer=bn_l1", "regularizer.strength=-1"], "regularizer.strength=-1"),
        (["regularizer=group_lasso", "regularizer.strength=nan"], "regularizer.strength=nan is invalid"),
        (
            [
                "distill=kd",
                "distill.temperature=0",
                "pruner=agp_filter",
                "epochs=3",
                "schedule.starting_epoch=1",
                "schedule.ending_epoch=2",
            ],
            "distill.temperature=0",
        ),
        (
            [
                "distill=kd",
                "distill.alpha=1.5",
                "pruner=agp_filter",
                "epochs=3",
                "schedule.starting_epoch=1",
                "schedule.ending_epoch=2",
            ],
            "distill.alpha=1.5 is invalid; allowed: a number in [0, 1]",
        ),
        # the dense teacher at pruning's first epoch 0, without pretrained=: untrained (issue 29 item 1)
        (
            ["distill=kd", "pruner=agp_filter"],
            "distill.teacher=dense would be the untrained model (the model at epoch 0, when pruning starts, "
            "without pretrained=); allowed: schedule.starting_epoch=N >= 1",
        ),
        (["distill=kd"], "distill.teacher=dense would be the untrained model (the model at epoch 0, without a pruner"),
        (
            ["distill=kd", "distill.teacher=/no/such/teacher.pt"],
            "distill.teacher file not found: distill.teacher=/no/such/teacher.pt",
        ),
        (
            ["pruner=agp_filter", "pruner/criterion=apoz", "pruner.coupling=layer", "pruner.skip_output_layer=false"],
            "criterion=apoz needs a ReLU/ReLU6 module after each ranked layer; layer classifier has none",
        ),
        (
            [
                "pruner=agp_filter",
                "pruner/criterion=bn_gamma",
                "pruner.coupling=layer",
                "pruner.skip_output_layer=false",
            ],
            "criterion=bn_gamma needs a BatchNorm directly after each ranked layer (structure=filter); "
            "layer classifier has none",
        ),
        (
            ["pruner=agp_filter", "pruner/criterion=taylor", "fold_batchnorm=true"],
            "fold_batchnorm=True cannot be combined with pruner.criterion=taylor",
        ),
        (["pruner=agp", "pruner/criterion=apoz"], "pruner.criterion=apoz does not support pruner.structure=fine"),
    ],
)
def test_bad_method_input_is_one_line_before_data(run_experiment, tmp_path, overrides, expected):
    with pytest.raises(SecateursError) as error:
        run_experiment(["tracking=none", "epochs=1", *overrides])
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_bad_method_input_from_the_cli_exits_2(tmp_path):
    foreign = tmp_path / "teacher.txt"
    foreign.write_text("not a model")
    result = run_cli(["distill=kd", f"distill.teacher={foreign}", *cli_dirs(tmp_path)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "distill.teacher file is not a file written by torch.save" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli(["regularizer=lasso", *cli_dirs(tmp_path)])
    assert result.returncode == 2 and "regularizer=lasso is not an option of regularizer" in result.stderr


@pytest.mark.slow
def test_sensitivity_analysis_ranks_with_a_data_criterion(run_experiment, tmp_path):
    overrides = [
        "tracking=none",
        "task=sensitivity",
        "pruner=agp_filter",
        "pruner/criterion=taylor",
        "pruner.calibration_batches=2",
        "sensitivity.levels=[0.3,0.7]",
        "loader.batch_size=128",
    ]
    _, context, result = run_experiment(overrides, run_dir=tmp_path / "sens")
    table = (context.run_dir / "sensitivity" / "sensitivity.md").read_text()
    for unit in ("block1.0", "block2.0", "block3.0"):
        assert f"| {unit}" in table
    assert 0.0 <= result["sensitivity/dense_top1"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_two_processes_prune_with_taylor_and_distill(tmp_path, precision):
    from test_distributed import torchrun

    from framework.tracking.metrics_file import read_metrics

    runs = tmp_path / "runs"
    done, output = torchrun(
        [
            f"precision={precision}",
            "pruner=agp_filter",
            "pruner/criterion=taylor",
            "pruner.calibration_batches=2",
            "distill=kd",
            "regularizer=group_lasso",
            "epochs=2",
            "schedule.starting_epoch=1",  # a dense epoch first: the teacher has learnt
            "schedule.ending_epoch=2",
            "loader.batch_size=64",
            "pruner.thin=never",
            # MLflow and the deploy step under torchrun: tests/runner/test_distributed.py
            "tracking=none",
            "deploy.enabled=false",
            f"hydra.run.dir={runs}/" + "${now:%H-%M-%S-%f}",
        ],
        tmp_path,
    )
    assert done.returncode == 0, output[-3000:]
    (run_dir,) = list(runs.iterdir())
    import json

    checks = json.loads((run_dir / "distributed.json").read_text())["checks"]
    # masks and weights agree on both ranks, no pruned weight is nonzero (float32 weights, also
    # when the steps ran in bfloat16); that the all-reduced sums themselves are equal on every
    # rank is shown in tests/pruning/test_calibration_ranks.py
    assert checks and all(check["agree"] for check in checks)
    for check in checks:
        rank0, rank1 = check["ranks"]
        assert rank0["parameters_sha256"] == rank1["parameters_sha256"]
        assert rank0["nonzero_pruned"] == rank1["nonzero_pruned"] == 0 and rank0["layers"] > 0
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["precision"]["precision"] == precision
    assert all(value.dtype == torch.float32 for value in checkpoint["model"].values() if value.is_floating_point())
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1]
    assert "distill/kd_loss" in records[1] and records[1]["regularizer/value"] > 0
    assert "distill/teacher_top1" in records[1] and "distill/kd_loss" not in records[0]
    # pruned to its target at epoch 1 (the schedule's one pruning epoch): half the filters of every convolution
    assert records[-1]["pruning/target_sparsity"] == 0.5
    masks = checkpoint["hooks"]["pruning"]["masks"]
    convolutions = [name for name in masks if name.endswith(".0.weight")]
    assert convolutions == ["block1.0.weight", "block2.0.weight", "block3.0.weight"]
    for name in convolutions:
        assert (masks[name].flatten(1).sum(dim=1) == 0).float().mean() == 0.5, name
