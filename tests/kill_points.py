"""A SIGKILL at an exact point of a run, for the kill-and-resume tests.

A kill sent from outside races the run: on a loaded machine the point it aims at (an int8
calibration, one training step) may be over before the signal lands, and the test would then pass
without testing what it says. Here the run kills itself: a forked copy of the test process wraps
one function of ours so that its N-th call sends SIGKILL to the process, then runs the run in
that process. Nothing else of the run changes, and the kill is the real one (no handler, no
cleanup, files left as they are). A fork needs no fresh interpreter, so no imports are paid again.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any


def kill_at(target: str, call: int) -> None:
    """In this process, the ``call``-th call of ``target`` (``package.module:Class.method`` or
    ``package.module:function``, looked up through its owner, so every caller sees it) kills the
    process on entry; the calls before it run as usual."""
    module_name, _, qualified = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *path, name = qualified.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    def trapped(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == call:
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, trapped)


def run_killed_at(target: str, call: int, run: Callable[[], Any]) -> None:
    """Run ``run()`` in a forked copy of this process that is SIGKILLed at ``target``'s ``call``-th
    call; fails when the run ended any other way (it never got there, or raised)."""

    def trapped_run() -> None:
        kill_at(target, call)
        run()
        raise SystemExit(3)  # the run finished without reaching the point

    status = run_forked(trapped_run)
    assert status == -signal.SIGKILL, (
        f"the run was to be killed at call {call} of {target}, but it ended with "
        f"{'exit code ' + str(status) if status >= 0 else 'signal ' + str(-status)}"
    )


def run_forked(run: Callable[[], Any]) -> int:
    """Run ``run()`` in a forked copy of this process and return its exit code (a command-line run
    whose process state, such as Hydra's and logging's, must not leak into the test process)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            run()
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 4
        except BaseException:
            traceback.print_exc()
            code = 4
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
