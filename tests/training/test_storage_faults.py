"""A full disk or an unwritable run dir: one line, the last good checkpoint kept, no partial files.

A full disk is simulated for real with ``RLIMIT_FSIZE`` in a child process (writes beyond the
limit fail with EFBIG, SIGXFSZ ignored): the tests run as root, where permissions stop nothing.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from support import HANG_S, ROOT, cli_dirs, metrics_file, run_cli, tracking_hook
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from framework.errors import StorageError
from framework.tracking.metrics_file import append_line, read_metrics
from framework.training import CheckpointHook, Trainer, load_checkpoint

# Every config key the CLI tests here set, in one place (the config schema is being reshaped).
CLI_OVERRIDES = ["tracking=none", "loader.batch_size=64"]


def limit_file_size(max_bytes: int):
    """A ``preexec_fn``: files of the child cannot grow beyond ``max_bytes`` (a full disk)."""

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def run_limited(args, max_bytes, **kw):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        env=env,
        preexec_fn=limit_file_size(max_bytes),
        **kw,
    )


def tiny_trainer(hooks, epochs=2):
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Trainer(model, optimizer, loader, loader, epochs=epochs, hooks=hooks)


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so_in_one_line(tmp_path):
    child = textwrap.dedent(f"""
        import torch
        from framework.errors import StorageError
        from framework.training import save_atomic
        path = {str(tmp_path / "last.pt")!r}
        save_atomic({{"model": {{"w": torch.ones(10)}}, "optimizer": {{}}, "epoch": 1}}, path)
        try:
            save_atomic({{"model": {{"w": torch.ones(100_000)}}, "optimizer": {{}}, "epoch": 2}}, path)
        except StorageError as error:
            print(error)
    """)
    result = run_limited([sys.executable, "-c", child], 64 * 1024)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert "cannot write the checkpoint" in lines[0] and str(tmp_path / "last.pt") in lines[0]
    assert "File too large" in lines[0] and "previous checkpoint" in lines[0]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the partial file is gone


def test_a_full_disk_while_appending_metrics_is_one_line_and_keeps_earlier_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    child = textwrap.dedent(f"""
        from framework.errors import StorageError
        from framework.tracking.metrics_file import append_line
        append_line(__import__("pathlib").Path({str(path)!r}), '{{"epoch": 0, "x": 1.0}}')
        try:
            append_line(__import__("pathlib").Path({str(path)!r}), '{{"epoch": 1, "x": "' + "9" * 5000 + '"}}')
        except StorageError as error:
            print(error)
    """)
    result = run_limited([sys.executable, "-c", child], 1024)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "cannot write the metrics file" in lines[0] and str(path) in lines[0]
    assert read_metrics(path) == [{"epoch": 0, "x": 1.0}]


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0, "x": 1.0}\n{"epoch": 1, "x"')  # a crash mid-write
    append_line(path, json.dumps({"epoch": 1, "x": 2.0}))
    assert read_metrics(path) == [{"epoch": 0, "x": 1.0}, {"epoch": 1, "x": 2.0}]


def test_a_checkpoint_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "checkpoints").write_text("not a folder")
    trainer = tiny_trainer([CheckpointHook(tmp_path / "checkpoints")])
    with pytest.raises(StorageError) as info:
        trainer.fit()
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "checkpoints" / "last.pt") in message
    assert "no checkpoint has been written yet" in message


def test_a_run_dir_that_is_a_file_stops_the_metrics_file_with_one_line(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    trainer = tiny_trainer([tracking_hook(metrics_file(tmp_path / "run", 2))])
    with pytest.raises(StorageError) as info:
        trainer.fit()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cannot write the run status file {tmp_path / 'run'}")
    assert "Not a directory" in message
    with pytest.raises(StorageError, match="cannot write the metrics file .*metrics.jsonl"):
        append_line(tmp_path / "run" / "metrics.jsonl", "{}")


def test_partial_checkpoint_files_are_removed_at_the_next_start(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    partial = folder / ".last.pt.k3j2h1.tmp"
    partial.write_bytes(b"\x80" * 1000)  # what a kill in the middle of torch.save leaves
    other = folder / "notes.tmp"  # not ours: left alone
    other.write_text("x")
    tiny_trainer([CheckpointHook(folder)], epochs=1).fit()
    assert not partial.exists() and other.exists()
    assert load_checkpoint(folder / "last.pt")["epoch"] == 1


@pytest.mark.slow
def test_cli_full_disk_mid_run_exits_2_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    # A plain run measures the checkpoint sizes: the one before training (no momentum buffers)
    # is smaller than every later one. It also shows that a partial file is cleaned at start.
    plain = tmp_path / "plain"
    (plain / "run" / "checkpoints").mkdir(parents=True)
    partial = plain / "run" / "checkpoints" / ".last.pt.abcd.tmp"
    partial.write_bytes(b"\0" * 100)
    result = run_cli([*CLI_OVERRIDES, "epochs=1", *cli_dirs(plain, mlflow=False)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert not partial.exists()
    after_epoch = load_checkpoint(plain / "run" / "checkpoints" / "last.pt")
    full_size = (plain / "run" / "checkpoints" / "last.pt").stat().st_size
    momentum_bytes = sum(
        v.numel() * v.element_size()
        for s in after_epoch["optimizer"]["state"].values()
        for v in s.values()
        if torch.is_tensor(v)
    )
    assert momentum_bytes > 10_000
    limit = full_size - momentum_bytes // 2  # the first save fits, the ones after an epoch do not

    full = tmp_path / "full"
    result = run_limited(
        [sys.executable, str(ROOT / "run.py"), *CLI_OVERRIDES, "epochs=3", *cli_dirs(full, mlflow=False)], limit
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr[-3000:]
    checkpoint = full / "run" / "checkpoints" / "last.pt"
    assert errors[0].startswith("error: cannot write the checkpoint") and str(checkpoint) in errors[0]
    assert "Traceback" not in result.stderr
    assert load_checkpoint(checkpoint)["epoch"] == 0  # the good one from before training
    assert [p.name for p in checkpoint.parent.iterdir()] == ["last.pt"]


def test_cli_unwritable_checkpoint_folder_exits_2_with_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("a file where the folder should be")
    result = run_cli([*CLI_OVERRIDES, "epochs=1", *cli_dirs(tmp_path, mlflow=False)])
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "cannot write the checkpoint" in errors[0], result.stderr[-2000:]
