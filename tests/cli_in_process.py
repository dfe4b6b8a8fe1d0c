"""The command (``framework.app.main``) run inside the test's own process, as ``run.py args`` would
run it: the same checks, Hydra's composition and job, the same output and exit code, without the
~6 s a new interpreter spends importing torch, Hydra and MLflow.

A subprocess stays where the process itself is what a test checks: signals, SIGKILL and resume,
torchrun's ranks, the console script, what a fresh interpreter imports, ``sys.path``.

What a run changes in its process and a test process must not keep is put back afterwards: the
logging handlers Hydra configures (a console handler on the captured stream, a file handler in
the run dir), warning filters, environment, ``sys.path``, signal handlers, the working directory.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from support import ROOT


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict))]
    saved = {id(lg): (lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers}
    try:
        yield
    finally:
        for logger in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict))]:
            before = saved.get(id(logger))
            kept = before[1] if before else []
            for handler in logger.handlers[:]:
                if handler not in kept:
                    logger.removeHandler(handler)
                    handler.close()
            if before:
                _, handlers, level, propagate, disabled = before
                logger.handlers[:] = handlers
                logger.setLevel(level)
                logger.propagate, logger.disabled = propagate, disabled


@contextlib.contextmanager
def _warnings_as_in_a_new_process() -> Iterator[None]:
    """Python's default filters, every warning printed to ``sys.stderr`` (pytest records them
    instead), and nothing counted as shown before: a warning the command gives is in its output
    however many runs this process made before."""

    def show(message: warnings.WarningMessage) -> None:
        sys.stderr.write(
            warnings.formatwarning(message.message, message.category, message.filename, message.lineno, message.line)
        )

    once = dict(warnings.onceregistry)
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings._showwarnmsg_impl = show  # type: ignore[attr-defined]  # restored on exit
        warnings.onceregistry.clear()
        try:
            yield
        finally:
            warnings.onceregistry.clear()
            warnings.onceregistry.update(once)


@contextlib.contextmanager
def _process_state_restored(cwd: Path) -> Iterator[None]:
    environ, path, argv, here = dict(os.environ), sys.path[:], sys.argv[:], os.getcwd()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    os.chdir(cwd)
    try:
        with _logging_restored():
            yield
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:], sys.argv[:] = path, argv
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


# Where the modules a run may import for good live: everything else a run imports is the user's
# code (``_target_: my_net.MyNet`` from the current folder), forgotten afterwards so that the next
# run imports its own ``my_net`` as a new process would.
_INSTALLED = (sys.prefix, sys.base_prefix, str(ROOT / "framework"), str(ROOT / "hydra_plugins"))


def _forget_user_modules(before: set[str]) -> None:
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None)
        if file and not str(file).startswith(_INSTALLED):
            del sys.modules[name]


def _fresh_invocation() -> None:
    """What one invocation of the command keeps in module state, cleared as a new process has it."""
    from hydra.core.global_hydra import GlobalHydra

    import framework.app as app
    from framework.sweeps import callback, outcome

    app._jobs_started, app._quiet_stderr = 0, None
    app._user_errors.clear()
    outcome.failed_jobs.clear()
    callback._open_sweeps.clear()
    GlobalHydra.instance().clear()


class _Captured:
    """One of the process's output streams (1 or 2) into a file, at the file-descriptor level:
    what Python prints and what the processes a run starts print (joblib's and submitit's job
    processes inherit the descriptor), as a pipe to a subprocess would collect them."""

    def __init__(self, fd: int):
        self.fd, self.file = fd, tempfile.TemporaryFile()
        self.stream = open(self.file.fileno(), "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)

    def __enter__(self) -> io.TextIOBase:
        self.saved = os.dup(self.fd)
        os.dup2(self.file.fileno(), self.fd)
        return self.stream

    def __exit__(self, *exc_info) -> None:
        self.stream.flush()
        os.dup2(self.saved, self.fd)
        os.close(self.saved)

    def text(self) -> str:
        self.file.seek(0)
        text = self.file.read().decode("utf-8", errors="replace")
        self.stream.close()
        self.file.close()
        return text


def run_main(args: Sequence[str], cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """``run.py args`` in this process; returns what :func:`support.run_cli` returns (exit code,
    the text written to stdout and stderr)."""
    import framework.app as app

    out, err = _Captured(1), _Captured(2)
    code, modules = 0, set(sys.modules)
    with _process_state_restored(Path(cwd)):
        os.environ.pop("HYDRA_FULL_ERROR", None)
        os.environ.update(env or {})
        sys.argv[:] = [str(ROOT / "run.py"), *args]
        _fresh_invocation()
        with out as stdout, err as stderr, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                with _warnings_as_in_a_new_process():
                    app.main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except Exception:  # what the interpreter would print before exiting 1
                stderr.write(traceback.format_exc())
                code = 1
            finally:
                _fresh_invocation()
                _forget_user_modules(modules)
    return subprocess.CompletedProcess(list(args), code, out.text(), err.text())
