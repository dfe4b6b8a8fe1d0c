"""A second process that holds a run dir's lock, for the tests of the lock and its users."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from support import ROOT


def hold_lock_in_child(run_dir) -> subprocess.Popen:
    """Start a process that takes the lock on ``run_dir`` and keeps it until killed."""
    child = textwrap.dedent(f"""
        import sys, time
        from framework.process.run_lock import lock_run_dir
        lock = lock_run_dir({str(run_dir)!r})
        print("locked", flush=True)
        time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", child], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process
