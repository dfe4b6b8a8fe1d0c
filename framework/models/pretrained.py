"""Loading trained weights into a freshly built model (``pretrained=<path>``).

Accepted files, all read with ``torch.load(weights_only=True)`` so a file cannot run code:

- a plain ``state_dict`` (``torch.save(model.state_dict(), path)``);
- this project's checkpoint dict, which holds the ``state_dict`` under the key ``"model"``.

Keys saved from a ``DataParallel``/``DistributedDataParallel`` wrapper carry a ``module.`` prefix,
and from a ``torch.compile``d model an ``_orig_mod.`` prefix; both are stripped when every key has
them. Every failure is a one-line :class:`CheckpointError` instead of a pickle or
``load_state_dict`` traceback.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from framework.errors import CheckpointError
from framework.pruning.graph.fx import WRAPPER_PREFIXES
from framework.pruning.thinning.thin import apply_recipe, thinning_recipe
from framework.serialization import load_weights_only

KEY = "pretrained"
# How many offending keys a message lists before summarising the rest.
SHOWN_KEYS = 5
# torch.save writes a zip archive; its legacy format (and plain pickles) start with PROTO 0x80.
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"
# A run folder's files that load here, named when the path given is a run folder.
RUN_FILES = ("checkpoints/best.pt", "checkpoints/last.pt", "thinned/model.pt")


def check_pretrained_file(path: str | os.PathLike) -> None:
    """Cheap up-front check that ``path`` is an existing, readable, complete PyTorch file.

    Reads only the first bytes and the zip directory at the end, never the tensors; a file that
    passes can still hold keys that do not fit the model, which :func:`load_pretrained` reports.
    """
    file = Path(path)
    if not file.exists():
        raise CheckpointError(
            f"pretrained file not found: {KEY}={file}; give the path of a saved state_dict or checkpoint file"
        )
    if file.is_dir():
        inside = [str(file / name) for name in RUN_FILES if (file / name).is_file()]
        raise CheckpointError(
            f"pretrained path is a folder, not a file: {KEY}={file}; give "
            + (
                f"one of its files ({', '.join(inside)})"
                if inside
                else "the path of a saved state_dict or checkpoint file"
            )
        )
    if not file.is_file():
        raise CheckpointError(
            f"pretrained path is not a file: {KEY}={file}; give the path of a saved state_dict or checkpoint file"
        )
    try:
        with file.open("rb") as handle:
            head = handle.read(len(ZIP_MAGIC))
    except OSError as error:
        raise CheckpointError(
            f"pretrained file cannot be read: {KEY}={file} ({error.strerror or error}); "
            "it must be readable by this user"
        ) from None
    if head.startswith(ZIP_MAGIC):
        # A download or copy cut short loses the zip directory stored at the end of the file.
        if not zipfile.is_zipfile(file):
            raise CheckpointError(f"pretrained file is truncated or damaged: {KEY}={file}; save or copy it again")
        return
    if head.startswith(PICKLE_MAGIC):
        return
    reason = "empty" if not head else "not a file written by torch.save"
    raise CheckpointError(
        f"pretrained file is {reason}: {KEY}={file}; expected a state_dict or checkpoint saved with torch.save"
    )


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (strict: every key must fit) and return it.

    A thinned model (``thinned/model.pt`` of a run, or a checkpoint written after thinning) carries
    the recipe of its smaller architecture: ``model`` is resized with it first."""
    check_pretrained_file(path)
    content = read_file(Path(path))
    recipe = thinning_recipe(content)
    state = extract_state_dict(content, Path(path))
    state = strip_wrapper_prefixes(state)
    if recipe is not None:
        apply_recipe(model, recipe, state)
    check_fits(model, state, Path(path))
    model.load_state_dict(state, strict=True)
    return model


def read_file(path: Path) -> object:
    """``torch.load`` on the CPU, turning any reading error into a one-line CheckpointError."""
    return load_weights_only(
        path, f"pretrained file {KEY}={path}", advice="expected a state_dict or checkpoint saved with torch.save"
    )


def extract_state_dict(content: object, path: Path) -> dict[str, Tensor]:
    """The ``state_dict`` inside a loaded file: the file itself, or its ``"model"`` entry (a
    checkpoint), or its ``"state_dict"`` entry (a thinned model)."""
    if isinstance(content, Mapping) and isinstance(content.get("model"), Mapping):
        content = content["model"]
    elif isinstance(content, Mapping) and isinstance(content.get("state_dict"), Mapping) and "recipe" in content:
        content = content["state_dict"]
    if (
        isinstance(content, Mapping)
        and content
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in content.items())
    ):
        return dict(content)
    if isinstance(content, Mapping):
        found = f"a dict with keys {summarise(sorted(map(str, content)))}"
    else:
        found = f"a {type(content).__name__}"
    raise CheckpointError(
        f"pretrained file holds {found}, not weights: {KEY}={path}; expected a state_dict "
        "(names to tensors) or a checkpoint dict with the state_dict under 'model'"
    )


def strip_wrapper_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove ``module.``/``_orig_mod.`` prefixes that every key shares (wrappers add them)."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix) :]: value for key, value in state.items()}
                changed = True
    return state


def check_fits(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """Raise a CheckpointError naming missing, unexpected and mis-shaped keys, if there are any."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"pretrained file does not fit the model: {KEY}={path}; missing keys "
            f"{summarise(missing)}, unexpected keys {summarise(unexpected)}; it must come from "
            "the same model (model.name, depth, width, dataset classes)"
        )
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if state[key].shape != value.shape
    ]
    if mismatched:
        raise CheckpointError(
            f"pretrained file does not fit the model: {KEY}={path}; shape mismatch in "
            f"{summarise(mismatched)}; it must come from the same model (model.name, depth, "
            "width, dataset classes)"
        )


def summarise(items: list[str]) -> str:
    """``[a, b, c, d, e] (+7 more)`` or ``none``."""
    if not items:
        return "none"
    shown = "[" + ", ".join(items[:SHOWN_KEYS]) + "]"
    rest = len(items) - SHOWN_KEYS
    return shown + (f" (+{rest} more)" if rest > 0 else "")
