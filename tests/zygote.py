"""Command-line runs as real processes, forked from an interpreter that has imported torch, MLflow and
Hydra once, instead of a new interpreter each (~5 s of imports per run, a third of the suite).

A test that needs the process itself (SIGKILL mid-epoch and resume, Ctrl-C, a full disk, a locked run
folder, a sweep's exit code) still gets one: its own pid, exit code, signals and output files, the
command run as ``python run.py args`` runs it (``runpy``, ``__main__``, ``sys.argv``, ``sys.path[0]``
the script's folder, the working directory and environment given). What differs from a new
interpreter is only what the imports did: modules already in ``sys.modules``. So a test about what a
fresh interpreter imports, the console script, ``sys.path`` or a variable read at import time (the
Hugging Face hub's offline switch) starts ``sys.executable`` itself, and nothing here imports the
hub, timm or transformers.

One zygote per test process (an xdist worker), started on first use and ended with the process. The
protocol is one message per datagram on a Unix socket pair: a request carries the command and the
three descriptors the child writes to; the zygote answers with the child's pid, and later with its
exit status (the zygote is the parent that reaps it).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

_MAX_MESSAGE = 1 << 20


# ---------------------------------------------------------------- the zygote (a process of its own)


def _preload() -> None:
    # What every run imports before it does anything; the hub, timm and transformers stay out (they
    # read HF_HUB_OFFLINE and HF_HOME once, at import, and tests set those per run).
    import mlflow
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401  (torch.optim's first step imports it: ~1 s)

    import framework.app  # noqa: F401


def _become_the_command(request: dict, fds: list[int]) -> None:
    """In the forked child: take the given descriptors, folder, environment and signals, then run the
    command; its SystemExit (or exception) ends this process as it would end a new interpreter."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # what a new interpreter starts with: Ctrl-C raises KeyboardInterrupt, every other signal default,
    # none blocked (the test process may ignore SIGINT when it runs in the background)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    import random

    random.seed()  # a new process draws its own seed; a fork would share the zygote's
    import runpy

    argv = request["argv"]
    if argv[0] == "-m":
        sys.argv[:] = [argv[1], *argv[2:]]
        sys.path[0] = request["cwd"]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv[:] = argv
        sys.path[0] = str(Path(argv[0]).resolve().parent)
        runpy.run_path(argv[0], run_name="__main__")


def _end_as_an_interpreter_would(request: dict, fds: list[int]) -> None:
    """Run the command, then end the child as a new interpreter ends after it: the exit code its
    SystemExit gives (1 and the traceback for an exception, death by SIGINT for an uncaught Ctrl-C),
    non-daemon threads joined, ``atexit`` functions run, output flushed. What is skipped is tearing
    down the modules torch and MLflow loaded (~3 s a process, measured): nothing a run writes
    depends on it, so the child leaves with ``os._exit``."""
    code = 0
    try:
        _become_the_command(request, fds)
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize does first
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    if code == -signal.SIGINT:  # as CPython ends on an uncaught KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)


def _serve(channel: socket.socket) -> None:
    """Fork a child per request and report each child's exit status, until the client closes."""
    import select

    children: set[int] = set()
    while True:
        readable, _, _ = select.select([channel], [], [], 0.05)
        if readable:
            message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, 3)
            if not message:
                break  # the test process ended
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                channel.close()
                _end_as_an_interpreter_would(json.loads(message), fds)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            channel.send(json.dumps({"pid": pid}).encode())
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                channel.send(json.dumps({"exit": pid, "status": os.waitstatus_to_exitcode(status)}).encode())
    for pid in children:  # the client is gone: its runs go with it
        os.kill(pid, signal.SIGKILL)


def _zygote_main(fd: int) -> None:
    channel = socket.socket(fileno=fd)
    _preload()
    channel.send(b'{"ready": true}')
    _serve(channel)


# ---------------------------------------------------------------- the client (in the test process)


class Zygote:
    """The test process's end: starts the zygote, sends requests, collects exit statuses."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = Path(__file__).resolve().parents[1]
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        theirs.close()
        self.channel = ours
        self.lock = threading.Lock()
        self.exits: dict[int, int] = {}
        self.pids: list[int] = []
        self.changed = threading.Condition()
        assert json.loads(self._receive()) == {"ready": True}, "the zygote did not start"
        threading.Thread(target=self._collect, name="zygote-exits", daemon=True).start()

    def _receive(self) -> bytes:
        message = self.channel.recv(_MAX_MESSAGE)
        if not message:
            raise RuntimeError(f"the zygote ended (exit code {self.process.wait()})")
        return message

    def _collect(self) -> None:
        while True:
            try:
                message = json.loads(self._receive())
            except (OSError, RuntimeError):
                with self.changed:
                    self.exits.setdefault(-1, -1)  # wakes every waiter: the zygote is gone
                    self.changed.notify_all()
                return
            with self.changed:
                if "pid" in message:
                    self.pids.append(message["pid"])
                else:
                    self.exits[message["exit"]] = message["status"]
                self.changed.notify_all()

    def start(self, argv: list[str], cwd: Path, env: dict[str, str], fds: list[int]) -> int:
        request = json.dumps({"argv": [str(a) for a in argv], "cwd": str(cwd), "env": env}).encode()
        with self.lock, self.changed:
            asked = len(self.pids)
            socket.send_fds(self.channel, [request], fds)
            while len(self.pids) == asked:
                if -1 in self.exits:
                    raise RuntimeError("the zygote ended before it started the command")
                self.changed.wait(1.0)
            return self.pids[asked]

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changed:
            while pid not in self.exits:
                if -1 in self.exits:
                    raise RuntimeError("the zygote ended while a command ran")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.changed.wait(1.0 if left is None else min(left, 1.0))
            return self.exits[pid]

    def close(self) -> None:
        self.channel.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


_ZYGOTE: dict[int, Zygote] = {}


def zygote() -> Zygote:
    """This process's zygote (one per pid: a forked test process starts its own)."""
    if os.getpid() not in _ZYGOTE:
        _ZYGOTE[os.getpid()] = started = Zygote()
        atexit.register(started.close)
    return _ZYGOTE[os.getpid()]


class ForkedRun:
    """A command run by the zygote, used as a :class:`subprocess.Popen` with its output in files:
    ``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``, ``communicate`` (text)."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]):
        import tempfile

        self.args = argv
        self.out, self.err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        with open(os.devnull, "rb") as stdin:
            self.pid = zygote().start(argv, cwd, env, [stdin.fileno(), self.out.fileno(), self.err.fileno()])
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = zygote().exit_code(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = zygote().exit_code(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self._text(self.out), self._text(self.err)

    @staticmethod
    def _text(file) -> str:
        file.seek(0)
        return file.read().decode("utf-8", errors="replace")


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=...)`` through
    the zygote (``argv``: the script and its arguments, or ``-m``, a module and its arguments)."""
    process = ForkedRun(argv, cwd, env)
    try:
        out, err = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    return subprocess.CompletedProcess([sys.executable, *argv], process.wait(), out, err)


if __name__ == "__main__":
    _zygote_main(int(sys.argv[1]))
