"""Turning a resolved config into MLflow params, tags and a readable run name."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

# What MLflow accepts in a param key.
_VALID_KEY = re.compile(r"^[\w\-. /]+$")
MAX_PARAM_VALUE = 6000


def flatten_config(cfg: Any) -> dict[str, str]:
    """``{"optimizer.lr": "0.05", "fold_batchnorm": "False", ...}`` from a (resolved) config.

    Lists are kept whole (``[10, 15]``). A mapping whose keys MLflow would refuse, such as
    ``pruner.levels`` with glob patterns, is kept whole as JSON under its own key.
    """
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg
    flat: dict[str, str] = {}

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


def run_name(overrides: Iterable[str], swept: Iterable[str] = (), task: str = "train") -> str:
    """``fold_batchnorm=true,pruner=agp,epochs=2``: the overrides, readable in the runs table, or
    ``default``. The keys a sweep varies (``swept``) come first, so the part that tells the jobs
    of a sweep apart is what the table shows before it cuts the name; values are written as a
    user types them (``true``, not Python's ``True``, which sweepers hand back). A task other than
    training says so first: ``eval 02-29-52/checkpoints/best.pt``, the file it evaluates by the
    end of its path (the part that tells two evaluations apart)."""
    shown = [o for o in overrides if not o.startswith(("hydra.", "tracking.", "resume=", "progress="))]
    swept = set(swept)
    shown = [o for o in shown if _key(o) in swept] + [o for o in shown if _key(o) not in swept]
    typed = [as_typed(o) for o in shown if task == "train" or _key(o) != "task"]
    if task != "train":
        files = [_path_end(o.split("=", 1)[1]) for o in typed if _key(o) == "pretrained"]
        rest = [o for o in typed if _key(o) != "pretrained"]
        name = " ".join([task, *files]) + (f" {','.join(rest)}" if rest else "")
    else:
        name = ",".join(typed) or "default"
    return name if len(name) <= 250 else name[:247] + "..."


def _path_end(path: str, parts: int = 3) -> str:
    """``/home/ana/outputs/runs/2026-11-30/02-29-52/checkpoints/best.pt`` -> ``02-29-52/checkpoints/best.pt``."""
    return "/".join(Path(path).parts[-parts:])


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


_TYPED = {"True": "true", "False": "false", "None": "null"}


def as_typed(override: str) -> str:
    """``fold_batchnorm=True`` -> ``fold_batchnorm=true``; a float from a sampler such as
    ``optimizer.lr=0.012345678901`` -> ``optimizer.lr=0.01235``."""
    if "=" not in override:
        return override
    key, value = override.split("=", 1)
    if value in _TYPED:
        return f"{key}={_TYPED[value]}"
    if re.fullmatch(r"-?\d+\.\d{5,}(e-?\d+)?", value):
        return f"{key}={float(value):.4g}"
    return override


def package_version() -> str:
    """``0.1.0``: the installed secateurs' version (an installed run has no git commit to record)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("secateurs")
    except PackageNotFoundError:  # a clone run without pip install
        return "not installed"


def git_commit(directory: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory, capture_output=True, text=True
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")
