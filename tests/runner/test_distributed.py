"""torchrun with two CPU processes (gloo): one run, identical masks, metrics over the whole
validation split, resume after SIGKILL, config mistakes and failing ranks.

Each test starts ``torchrun --nproc_per_node=2 run.py ...`` as a user would (one thread per
rank), on the digits data and the small CNN, for a few epochs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from support import HANG_S, ROOT, store_overrides

from framework.tracking.metrics_file import read_metrics

TORCHRUN = Path(sys.executable).with_name("torchrun")
TESTS = ROOT / "tests"  # rank_models.py


def wait_for_group_to_die(group: int) -> None:
    """Until no process of ``group`` is alive. ``wait()`` reaps torchrun only; a killed rank is
    re-parented and, on a loaded machine, can take a moment to finish dying, holding the run dir's
    lock until its files close (a zombie holds none)."""
    deadline = time.monotonic() + HANG_S
    while _living_members(group):
        assert time.monotonic() < deadline, f"processes of group {group} outlived SIGKILL: {_living_members(group)}"
        time.sleep(0.05)


def _living_members(group: int) -> list[int]:
    living = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue  # it ended while we looked
        if int(fields[2]) == group and fields[0] != "Z":
            living.append(int(stat.parent.name))
    return living


def torchrun(
    args: Sequence[str],
    tmp_path: Path,
    timeout: float = HANG_S,
    nproc: int = 2,
    popen: bool = False,
    store: bool = True,
    python_path: Sequence[Path] = (),
    **popen_args,
):
    """``torchrun --nproc_per_node=2 run.py args`` with one thread per rank; returns (process, output)
    or, with ``popen``, the running Popen."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(str(p) for p in [*python_path, ROOT, TESTS]),
    }
    env.pop("HYDRA_FULL_ERROR", None)
    command = [
        str(TORCHRUN),
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(ROOT / "run.py"),
        "progress=false",
        *(store_overrides(tmp_path) + ["tracking.log_model=false"] if store and "tracking=none" not in args else []),
        *args,
    ]
    if popen:
        return subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen_args
        )
    # its own process group: a torchrun that hangs is killed with its ranks, not only itself
    job = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        raise
    done = subprocess.CompletedProcess(command, job.returncode, stdout, stderr)
    return done, done.stdout + done.stderr


def mlflow_runs(tmp_path: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("secateurs")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def rank_exit_codes(output: str) -> list[int]:
    """Every rank's exit code as torchrun's failure summary lists them."""
    return [int(code) for code in re.findall(r"exitcode\s+:\s+(-?\d+)\s+\(pid", output)]


def test_ranks_come_from_torchrun_or_else_from_slurm_tasks():
    from framework.process.launcher import launched_rank, launched_world_size

    torchrun_env = {"RANK": "3", "WORLD_SIZE": "4", "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "MASTER_ADDR": "h"}
    assert (launched_rank(torchrun_env), launched_world_size(torchrun_env)) == (3, 4)
    slurm_env = {"SLURM_PROCID": "2", "SLURM_NTASKS": "8", "MASTER_ADDR": "node0"}
    assert (launched_rank(slurm_env), launched_world_size(slurm_env)) == (2, 8)
    # A plain SLURM job (no MASTER_ADDR) is one process, whatever its task count.
    assert launched_world_size({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) == 1
    assert (launched_rank({}), launched_world_size({})) == (0, 1)


def test_two_processes_make_one_run_with_identical_masks(tmp_path):
    # A run dir with microseconds in its name: each rank's Hydra would choose another one.
    runs = tmp_path / "runs"
    started = time.monotonic()
    done, output = torchrun(
        [
            "pruner=agp_filter",
            "fold_batchnorm=true",
            "epochs=3",
            "loader.batch_size=32",
            f"hydra.run.dir={runs}/" + "${now:%H-%M-%S-%f}",
        ],
        tmp_path,
    )
    assert done.returncode == 0, output[-3000:]
    print(f"torchrun 2 processes, 3 epochs: {time.monotonic() - started:.1f} s")

    # One run dir (rank 0's), with everything in it; one MLflow run.
    run_dirs = [p for p in runs.iterdir()]
    assert len(run_dirs) == 1, run_dirs
    run_dir = run_dirs[0]
    for name in ("metrics.jsonl", "checkpoints/last.pt", ".hydra/config.yaml", "thinned/model.pt", "distributed.json"):
        assert (run_dir / name).exists(), name
    (run,) = mlflow_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.tags["distributed.world_size"] == "2"
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert len(open(run_dir / "metrics.jsonl").read().splitlines()) == 3  # written once, by rank 0

    # The masks agreed on both ranks after every update, no pruned weight was nonzero, and the
    # final models were equal; the recorded hash is the checkpoint's model's.
    from framework.runner.mask_sync import parameters_fingerprint

    checks = json.loads((run_dir / "distributed.json").read_text())["checks"]
    assert [c["when"] for c in checks] == ["epoch 0 start", "end"]
    for check in checks:
        rank0, rank1 = check["ranks"]
        assert check["agree"] and rank0 == rank1 and rank0["nonzero_pruned"] == 0 and rank0["layers"] > 0
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checks[-1]["ranks"][0]["parameters_sha256"] == parameters_fingerprint(checkpoint["model"])

    # Final sparsity as scheduled: half of every conv's filters (the classifier's outputs are kept).
    sparsity = (run_dir / "pruning" / "sparsity.csv").read_text().splitlines()
    filter_pct = {
        line.split(",")[0]: float(line.split(",")[-4])
        for line in sparsity[1:]
        if line.startswith("block") or line.startswith("classifier")
    }
    assert filter_pct == {
        "block1.0.weight": 50.0,
        "block2.0.weight": 50.0,
        "block3.0.weight": 50.0,
        "classifier.weight": 0.0,
    }
    assert records[-1]["pruning/target_sparsity"] == 0.5

    # val/top1 is over the whole validation split: the saved (thinned) model, evaluated here in
    # one process on every validation sample, scores what the run logged.
    from framework.data import Digits, load_splits
    from framework.models import SimpleCNN
    from framework.pruning.thinning.thin import load_thinned

    model = load_thinned(run_dir / "thinned" / "model.pt", SimpleCNN(num_classes=10, in_channels=1)).eval()
    val = load_splits(Digits(val_fraction=0.2, seed=0), "framework.data.Digits").val
    inputs = torch.stack([val[i][0] for i in range(len(val))])
    targets = torch.tensor([int(val[i][1]) for i in range(len(val))])
    with torch.no_grad():
        top1 = (model(inputs).argmax(1) == targets).float().mean().item()
    assert abs(top1 - records[-1]["thin/val_top1"]) < 0.5 / len(val)


@pytest.mark.parametrize("mistake", ["value", "store", "value, rank 1 late"])
def test_a_config_mistake_is_reported_once_and_every_rank_exits_2(tmp_path, mistake):
    late = []
    if mistake.startswith("value"):  # every rank sees it before the process group starts
        args, message = ["optimizer.lr=-1"], "error: optimizer.lr=-1 is invalid"
    else:  # only rank 0 talks to MLflow: the others learn of it at the set-up barrier
        (tmp_path / "a_file").write_text("")
        args = [f"tracking.uri=sqlite:///{tmp_path}/a_file/mlflow.db"]
        message = "error: tracking (framework.tracking.trackers.mlflow_tracking): cannot reach the MLflow store"
    if mistake.endswith("late"):
        # Rank 1 starts 8 s after rank 0 (Python runs sitecustomize at start-up): rank 0 has long
        # found the mistake when rank 1 begins, the order that once let torchrun's SIGTERM kill
        # rank 1 (-15) before it could exit 2 by itself.
        late = [tmp_path / "late_rank"]
        late[0].mkdir()
        (late[0] / "sitecustomize.py").write_text(
            "import os, time\nif os.environ.get('RANK') == '1':\n    time.sleep(8)\n"
        )
    done, output = torchrun(
        [*args, "epochs=1", f"hydra.run.dir={tmp_path}/run"], tmp_path, store=False, python_path=late
    )
    assert done.returncode != 0
    assert output.count(message) == 1, output[-3000:]
    assert output.count("error: ") == 1, output[-3000:]
    assert rank_exit_codes(output) == [2, 2], output[-3000:]


@pytest.mark.parametrize("mode", ["raise", pytest.param("hang", marks=pytest.mark.slow)])
def test_a_failing_rank_ends_the_job_within_the_timeout(tmp_path, mode):
    timeout_s = 10
    # The hanging rank sleeps longer than a child process may take (HANG_S): a job that only
    # ended once it woke up fails here as hung, however slow the machine; one that ends through
    # the collective timeout (or torchrun stopping the ranks) passes, however slow its start-up.
    hang_s = HANG_S + 300
    done, output = torchrun(
        [
            "model._target_=rank_models.RankFailingCNN",
            f"+model.mode={mode}",
            "+model.after_steps=5",
            f"+model.hang_s={hang_s}",
            "epochs=3",
            f"distributed.timeout_s={timeout_s}",
            "tracking=none",
            f"hydra.run.dir={tmp_path}/run",
        ],
        tmp_path,
    )
    assert done.returncode != 0, output[-3000:]
    if mode == "raise":
        assert "rank 1 failed on purpose at step 5" in output
    else:  # rank 0 waited in the gradient all-reduce until the collective timeout
        assert re.search(r"[Tt]imed? ?out", output), output[-3000:]


@pytest.mark.slow
def test_sigkill_of_the_job_then_resume_auto_finishes_one_run(tmp_path):
    args = ["pruner=agp", "epochs=6", "loader.batch_size=16", f"hydra.run.dir={tmp_path}/run"]
    metrics = tmp_path / "run" / "metrics.jsonl"
    job = torchrun(args, tmp_path, popen=True, start_new_session=True)
    try:
        deadline = time.monotonic() + HANG_S
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
            assert job.poll() is None, job.stdout.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # torchrun and both ranks, at once
        job.wait()
        wait_for_group_to_die(job.pid)
    killed_at = len(read_metrics(metrics))
    assert killed_at < 6

    done, output = torchrun([*args, "resume=auto"], tmp_path)
    assert done.returncode == 0, output[-3000:]
    assert [r["epoch"] for r in read_metrics(metrics)] == list(range(6))
    (run,) = mlflow_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["resumed_at_epoch"]) >= killed_at
    checks = json.loads((tmp_path / "run" / "distributed.json").read_text())["checks"]
    resumed = [c for c in checks if c["when"].startswith("resume at epoch")]
    assert resumed and all(c["agree"] for c in checks)
    assert checks[-1]["ranks"][0]["parameters_sha256"] == checks[-1]["ranks"][1]["parameters_sha256"]
