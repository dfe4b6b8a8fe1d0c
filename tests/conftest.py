"""Shared fixtures: real Hydra composition of conf/, a real MLflow store on a temporary SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import framework.config  # noqa: F401  (schema + resolver)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def store_overrides(tmp_path: Path) -> List[str]:
    """Send MLflow to a fresh SQLite file and artifact folder inside ``tmp_path``."""
    return [
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.artifact_location={tmp_path}/artifacts",
    ]


@pytest.fixture
def compose_config():
    """``compose_config(["pruner=agp", ...])`` -> the composed DictConfig, as run.py would see it."""

    def _compose(overrides: Sequence[str] = ()):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def tracking_overrides(tmp_path) -> List[str]:
    return store_overrides(tmp_path)


def run_cli(args: Sequence[str], cwd: Path = ROOT, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    """Run ``python run.py args`` as a user would; returns the finished process (text output)."""
    full_env = dict(os.environ)
    full_env.pop("HYDRA_FULL_ERROR", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def cli_dirs(tmp_path: Path) -> List[str]:
    """Keep a subprocess run's Hydra dirs and MLflow store inside ``tmp_path``."""
    return [
        f"hydra.run.dir={tmp_path}/run",
        f"hydra.sweep.dir={tmp_path}/multirun",
        *store_overrides(tmp_path),
    ]
