"""Turning a resolved config into MLflow params, tags and a readable run name."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

# What MLflow accepts in a param key.
_VALID_KEY = re.compile(r"^[\w\-. /]+$")
MAX_PARAM_VALUE = 6000


def flatten_config(cfg: Any) -> Dict[str, str]:
    """``{"optimizer.lr": "0.05", "fold_batchnorm": "False", ...}`` from a (resolved) config.

    Lists are kept whole (``[10, 15]``). A mapping whose keys MLflow would refuse, such as
    ``pruner.levels`` with glob patterns, is kept whole as JSON under its own key.
    """
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg
    flat: Dict[str, str] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value and all(_VALID_KEY.match(str(k)) for k in value):
            for key, child in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), child)
        elif isinstance(value, dict):
            flat[prefix] = json.dumps(value, sort_keys=True)
        else:
            flat[prefix] = str(value)[:MAX_PARAM_VALUE]

    visit("", container)
    return flat


def run_name(overrides: Iterable[str]) -> str:
    """``pruner=agp,fold_batchnorm=true`` (the overrides, readable in the runs table) or ``default``."""
    shown = [o for o in overrides if not o.startswith(("hydra.", "tracking.", "resume=", "progress="))]
    name = ",".join(shown) or "default"
    return name if len(name) <= 250 else name[:247] + "..."


def git_commit(directory: Path) -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory, capture_output=True, text=True
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")
