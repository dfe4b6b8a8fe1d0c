"""Every field of a resume checkpoint checked before anything is restored from it.

A checkpoint is a file, and files get edited, truncated by hand, or written by another version of
the user's model class. ``load_checkpoint`` already refuses a file that is not ours; here each
field the loop restores is checked for its type and against the run it is about to continue:
the weights against the model (names and shapes, as ``pretrained=`` does), the epoch (a whole
number from 0 to ``epochs``, matching the history), the optimizer's state against the optimizer
(groups, parameters, state tensor shapes), the RNG states (they must be restorable), the training precision and its fp16 scaler, the history
(one mapping of metric -> number per finished epoch) and the hooks' states (mappings). Each
problem is one :class:`CheckpointError` line naming the file and the field, never a traceback
from deep inside torch and never a silently different run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framework.config import PRECISIONS
from framework.errors import CheckpointError, short_reason

SHOWN = 4


def _listed(items: list[str]) -> str:
    rest = len(items) - SHOWN
    return "[" + ", ".join(items[:SHOWN]) + "]" + (f" (+{rest} more)" if rest > 0 else "")


def check_checkpoint_fields(checkpoint: Mapping, path: Path, epochs: int) -> None:
    """Types and ranges of the fields that need no model: epoch, global_step, history, rng, hooks."""
    where = f"checkpoint {str(path)!r}"
    epoch = checkpoint.get("epoch")
    if type(epoch) is not int or not 0 <= epoch <= epochs:
        raise CheckpointError(
            f"{where}: epoch={epoch!r}; expected a whole number of finished epochs from 0 to epochs={epochs}"
        )
    step = checkpoint.get("global_step", 0)
    if type(step) is not int or step < 0:
        raise CheckpointError(f"{where}: global_step={step!r}; expected a whole number >= 0")
    history = checkpoint.get("history", [])
    if not isinstance(history, list) or not all(_is_metrics(entry) for entry in history):
        raise CheckpointError(f"{where}: history is not a list of metric -> number mappings (one per finished epoch)")
    if len(history) != epoch:
        raise CheckpointError(f"{where}: epoch={epoch} but its history holds {len(history)} epochs; they must agree")
    hooks = checkpoint.get("hooks", {})
    if not isinstance(hooks, Mapping) or not all(isinstance(state, Mapping) for state in hooks.values()):
        raise CheckpointError(f"{where}: hooks is not a mapping of hook name -> state mapping")
    config = hooks.get("config")
    if config is not None and not isinstance(config.get("params"), Mapping):
        raise CheckpointError(f"{where}: the recorded config (hooks.config.params) is not a mapping of key -> value")
    if "rng" in checkpoint:
        _check_rng(checkpoint["rng"], where)
    if checkpoint.get("precision") is not None:
        _check_precision(checkpoint["precision"], where)
    if checkpoint.get("lr_scheduler") is not None and not isinstance(checkpoint["lr_scheduler"], Mapping):
        kind = type(checkpoint["lr_scheduler"]).__name__
        raise CheckpointError(f"{where}: lr_scheduler is a {kind}; expected a mapping")


def _is_metrics(entry: Any) -> bool:
    return isinstance(entry, Mapping) and all(
        isinstance(key, str) and isinstance(value, (int, float)) and not isinstance(value, bool)
        for key, value in entry.items()
    )


def _check_precision(state: Any, where: str) -> None:
    """The training precision it was written with, and the fp16 gradient scaler's state (numbers)."""
    if not isinstance(state, Mapping) or state.get("precision") not in PRECISIONS:
        raise CheckpointError(
            f"{where}: precision is not a mapping naming one of {' | '.join(PRECISIONS)} (and the fp16 scaler's state)"
        )
    scaler = state.get("scaler")
    if scaler is not None and not _is_metrics(scaler):
        raise CheckpointError(f"{where}: precision.scaler is not the gradient scaler's state (name -> number)")


def _check_rng(state: Any, where: str) -> None:
    """Restore every recorded RNG state into a throwaway generator: what fails there would fail
    (or silently differ) in the run."""
    try:
        if not isinstance(state, Mapping):
            raise TypeError(f"a {type(state).__name__}, not a mapping")
        version, internal, gauss = state["python"]
        random.Random().setstate((version, tuple(internal), gauss))
        name, keys, position, has_gauss, cached = state["numpy"]
        np.random.RandomState().set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        torch.Generator().set_state(state["torch"])
        if "loader" in state:
            torch.Generator().set_state(state["loader"])
    except Exception as error:
        raise CheckpointError(
            f"{where}: its RNG state (rng) cannot be restored ({type(error).__name__}: "
            f"{short_reason(error, 120) if str(error).strip() else 'malformed'})"
        ) from None


def check_checkpoint_fits(
    checkpoint: Mapping, path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> None:
    """The weights fit ``model`` (names and shapes) and the optimizer state fits ``optimizer``."""
    where = f"checkpoint {str(path)!r}"
    state = checkpoint.get("model")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{where}: model is not a state_dict (a mapping of name -> tensor)")
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if missing or unexpected or mismatched:
        found = [
            f"missing keys {_listed(missing)}" if missing else "",
            f"unexpected keys {_listed(unexpected)}" if unexpected else "",
            f"shape mismatch in {_listed(mismatched)}" if mismatched else "",
        ]
        raise CheckpointError(
            f"{where}: its weights do not fit {type(model).__name__}: {'; '.join(f for f in found if f)}; "
            "was the model class or its arguments changed? resume with the model it was trained with, "
            "or start a new run with pretrained=<checkpoint>"
        )
    if optimizer is not None:
        _check_optimizer(checkpoint.get("optimizer"), optimizer, where)


def _check_optimizer(saved: Any, optimizer: torch.optim.Optimizer, where: str) -> None:
    if (
        not isinstance(saved, Mapping)
        or not isinstance(saved.get("state"), Mapping)
        or not isinstance(saved.get("param_groups"), list)
    ):
        raise CheckpointError(f"{where}: optimizer is not an optimizer state_dict (state, param_groups)")
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups) or not all(
        isinstance(group, Mapping) and isinstance(group.get("params"), list) for group in groups
    ):
        raise CheckpointError(
            f"{where}: optimizer has {len(groups)} parameter groups; {type(optimizer).__name__} has "
            f"{len(optimizer.param_groups)}; resume with the optimizer it was trained with"
        )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_ids = [i for group in groups for i in group["params"]]
    if len(saved_ids) != len(params):
        raise CheckpointError(f"{where}: optimizer holds {len(saved_ids)} parameters; the model has {len(params)}")
    index_of = {saved_id: position for position, saved_id in enumerate(saved_ids)}
    for saved_id, values in saved["state"].items():
        if saved_id not in index_of or not isinstance(values, Mapping):
            raise CheckpointError(f"{where}: optimizer state names parameter {saved_id!r}, which no group holds")
        param = params[index_of[saved_id]]
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != param.shape:
                raise CheckpointError(
                    f"{where}: optimizer state {key!r} of parameter {saved_id} has shape {tuple(value.shape)}; "
                    f"the parameter has {tuple(param.shape)}"
                )
            if value is not None and (not isinstance(value, (torch.Tensor, int, float)) or isinstance(value, bool)):
                raise CheckpointError(
                    f"{where}: optimizer state {key!r} of parameter {saved_id} is a {type(value).__name__}; "
                    "expected a tensor or a number"
                )
