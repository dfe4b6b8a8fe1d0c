"""One run per run dir: the second process to lock it gets one line naming the holder's pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from lock_holder import hold_lock_in_child
from support import ROOT, cli_dirs, run_cli

from framework.errors import RunDirInUseError
from framework.process.run_lock import lock_run_dir

# Every config key the CLI test here sets, in one place (the config schema is being reshaped).
CLI_OVERRIDES = ["tracking=none", "epochs=1"]


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    holder = hold_lock_in_child(tmp_path)
    try:
        with pytest.raises(RunDirInUseError) as info:
            lock_run_dir(tmp_path)
        assert str(info.value).startswith(f"run dir {tmp_path} is in use by another run (pid {holder.pid})")
        assert "\n" not in str(info.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_the_dir_free(tmp_path):
    holder = hold_lock_in_child(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with lock_run_dir(tmp_path) as lock:
        assert lock.held
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


def test_release_lets_the_next_run_in(tmp_path):
    first = lock_run_dir(tmp_path)
    with pytest.raises(RunDirInUseError):
        lock_run_dir(tmp_path)  # even from the same process: another open file description
    first.release()
    with lock_run_dir(tmp_path):
        pass


def test_cli_second_run_in_a_locked_run_dir_exits_2_with_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    holder = hold_lock_in_child(tmp_path / "run")
    try:
        result = run_cli([*CLI_OVERRIDES, *cli_dirs(tmp_path, mlflow=False)])
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [
        f"error: run dir {tmp_path / 'run'} is in use by another run (pid {holder.pid}); "
        "wait for it to end or give this run another hydra.run.dir"
    ], result.stderr[-2000:]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_forked_children_do_not_keep_a_killed_runs_lock(tmp_path):
    # DataLoader workers are forked and outlive a SIGKILLed run by a few seconds: the run dir
    # must be free for resume=auto at once.
    child = textwrap.dedent(f"""
        import os, time
        from framework.process.run_lock import lock_run_dir
        lock = lock_run_dir({str(tmp_path)!r})
        if os.fork() == 0:
            # Printed by the worker itself, so the fork hooks (which close the lock) have run.
            print(os.getpid(), flush=True)
            time.sleep(600)
            os._exit(0)
        time.sleep(600)
    """)
    holder = subprocess.Popen([sys.executable, "-c", child], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    worker = int(holder.stdout.readline())
    try:
        with pytest.raises(RunDirInUseError):
            lock_run_dir(tmp_path)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        os.kill(worker, 0)  # the forked worker is still alive ...
        with lock_run_dir(tmp_path) as lock:  # ... and the run dir is free
            assert lock.held
    finally:
        os.kill(worker, signal.SIGKILL)
