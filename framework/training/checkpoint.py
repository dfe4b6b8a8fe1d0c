"""Checkpoints: written atomically, read safely.

A checkpoint is a dict of tensors and plain values (``model``, ``optimizer``, ``lr_scheduler``,
``epoch`` = the number of finished epochs, ``rng``, ``hooks``) that loads with
``torch.load(path, weights_only=True)``: no pickled code is executed when reading it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Union

import torch

from framework.errors import CheckpointError
from framework.serialization import load_weights_only

PathLike = Union[str, os.PathLike]


def save_atomic(obj: Dict[str, Any], path: PathLike) -> Path:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    A crash at any point leaves either the previous file or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_safely(path: PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(weights_only=True)`` with one-line errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")
    return load_weights_only(path, f"{what} {str(path)!r}")


def load_checkpoint(path: PathLike) -> Dict[str, Any]:
    """A checkpoint written by this project (see the module docstring)."""
    checkpoint = load_safely(path, "checkpoint")
    required = ("model", "optimizer", "epoch")
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in required):
        keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a secateurs checkpoint (needs keys {list(required)}, found {keys})"
        )
    return checkpoint
