"""Checkpoints: written atomically, read safely.

A checkpoint is a dict of tensors and plain values (``model``, ``optimizer``, ``lr_scheduler``,
``epoch`` = the number of finished epochs, ``rng``, ``hooks``) that loads with
``torch.load(path, weights_only=True)``: no pickled code is executed when reading it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from framework.errors import CheckpointError, StorageError
from framework.process.signals import signals_deferred
from framework.serialization import load_weights_only

PathLike = str | os.PathLike
TMP_SUFFIX = ".tmp"


def save_atomic(obj: dict[str, Any], path: PathLike, what: str = "checkpoint") -> Path:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    A crash at any point leaves either the previous file or the new one, never a torn file. When
    the file cannot be written (disk full, read-only or missing folder), the temporary file is
    removed, the previous file is left as it was, and a one-line :class:`StorageError` says
    what (``what``) could not be written where.
    """
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        with signals_deferred(), os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(tmp_name, path)
    except BaseException as error:
        if tmp_name is not None:
            try:
                Path(tmp_name).unlink(missing_ok=True)
            except OSError:
                pass
        cause = storage_cause(error)
        if cause is None:
            raise
        kept = f"the previous {what} {path} is kept" if path.is_file() else f"no {what} has been written yet"
        raise StorageError(
            f"cannot write the {what} {path} ({cause}); {kept}; free disk space or make "
            f"{path.parent} writable, then continue with resume=auto"
        ) from None
    return path


def storage_cause(error: BaseException) -> str | None:
    """``"[Errno 28] No space left on device"`` when ``error`` is (or wraps) a failed file
    operation, else None. ``torch.save`` reports a failed write as a RuntimeError whose context
    is the OSError."""
    for candidate in (error, error.__cause__, error.__context__):
        if isinstance(candidate, OSError):
            reason = candidate.strerror or str(candidate) or type(candidate).__name__
            return f"[Errno {candidate.errno}] {reason}" if candidate.errno else reason
    return None


def remove_partial_files(path: PathLike) -> list[Path]:
    """Delete the temporary files that a kill in the middle of :func:`save_atomic` left beside
    ``path`` (``.<name>.*.tmp``); returns those removed. Call it only when no other process may
    be writing ``path`` (the run dir lock guarantees that)."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for partial in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
            try:
                partial.unlink()
                removed.append(partial)
            except OSError:
                pass  # cannot remove (read-only): the write that follows says so in one line
    return removed


def load_safely(path: PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(weights_only=True)`` with one-line errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")
    return load_weights_only(path, f"{what} {str(path)!r}")


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """A checkpoint written by this project (see the module docstring)."""
    checkpoint = load_safely(path, "checkpoint")
    required = ("model", "optimizer", "epoch")
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in required):
        keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a secateurs checkpoint (needs keys {list(required)}, found {keys})"
        )
    return checkpoint
