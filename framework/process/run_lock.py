"""One run per run dir: an exclusive, non-blocking ``flock`` on ``<run dir>/.lock``.

Two jobs given the same ``hydra.run.dir`` would interleave ``metrics.jsonl`` and overwrite each
other's checkpoint; the second one to start gets a one-line :class:`RunDirInUseError` instead.
The kernel drops the lock when its holder dies, even by SIGKILL, so a crashed run never blocks
its own ``resume=auto``. Forked children (DataLoader workers) close their copy of the lock's file
descriptor at once: a flock belongs to the open file, so workers that outlive a killed run by a
few seconds would otherwise keep its run dir locked. The lock file itself is left in place (deleting it would let a third
process lock a new file while the second still holds the old one); it holds the holder's pid,
for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from framework.errors import RunDirInUseError, StorageError
from framework.run_context import LOCK_FILE

# File descriptors of the locks this process holds, closed in every child it forks.
_held_fds: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in list(_held_fds):
        try:
            os.close(fd)
        except OSError:
            pass
    _held_fds.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


class RunDirLock:
    """Holds the lock on ``run_dir`` from construction until :meth:`release` (or the end of a
    ``with`` block, or garbage collection, or the end of the process)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StorageError(
                f"cannot create the lock file {self.path} ([Errno {error.errno}] {error.strerror}); "
                f"make the run dir {self.run_dir} writable"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise RunDirInUseError(
                f"run dir {self.run_dir} is in use by another run (pid {holder}); wait for it to "
                f"end or give this run another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        _held_fds.add(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _held_fds.discard(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def lock_run_dir(run_dir: str | os.PathLike) -> RunDirLock:
    """Take the run dir's lock or raise :class:`RunDirInUseError` naming the pid that holds it."""
    return RunDirLock(run_dir)


def lock_holder(run_dir: str | os.PathLike) -> str | None:
    """The pid (as text, ``"unknown"`` if unreadable) of the process that holds the lock on
    ``run_dir``, or None when no process does."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file: no run ever locked this dir
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd)
    finally:
        os.close(fd)
    return None


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"
