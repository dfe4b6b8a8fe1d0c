"""Reading files written by ``torch.save`` without running pickled code.

Checkpoints and pretrained weights both come through :func:`load_weights_only`, so every such
file is read with ``weights_only=True`` and every failure is the same kind of one-line error.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch

from framework.errors import CheckpointError, short_reason


def load_weights_only(path: str | os.PathLike, label: str, advice: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a ``CheckpointError`` naming ``label``
    (e.g. ``"checkpoint '/x/last.pt'"``) and ending with ``advice`` when the file cannot be read."""
    cause: Exception
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses anything but tensors and plain containers.
        problem = "holds objects other than tensors and plain values, refused by weights_only loading"
        cause: Exception = error
    except Exception as error:
        problem, cause = "is truncated or not a PyTorch file", error
    tail = f"; {advice}" if advice else ""
    raise CheckpointError(
        f"{label} cannot be loaded: it {problem} ({type(cause).__name__}: {short_reason(cause)}){tail}"
    ) from None
