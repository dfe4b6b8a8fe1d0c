"""Shared fixtures: real Hydra composition of conf/, a real MLflow store on a temporary SQLite file."""

from __future__ import annotations

import os
import sys

# One thread per torch process, in the workers and in every run they start: `make test` runs two
# xdist workers on two cores, and with each process spinning a thread per core the suite took
# twice as long (measured: 171 s -> 80 s for the end-to-end reliability and thinning tests).
# Set before anything imports torch, which reads it once.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
from collections.abc import Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from support import store_overrides

import framework.config  # noqa: F401  (schema + resolver)

# Helper modules (support.py, mlflow_server.py) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture
def compose_config():
    """``compose_config(["pruner=agp", ...])`` -> the composed DictConfig, as run.py would see it."""

    def _compose(overrides: Sequence[str] = ()):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory) -> Path:
    """One SQLite store for the session: creating MLflow's tables costs seconds, so tests share it
    and keep apart by experiment name."""
    return tmp_path_factory.mktemp("mlflow_store")


@pytest.fixture
def tracking_overrides(shared_store, request) -> list[str]:
    """MLflow into the shared temporary store, in an experiment named after the test."""
    name = request.node.name.replace("[", "_").replace("]", "")
    return [*store_overrides(shared_store), f"tracking.experiment={name}"]


@pytest.fixture(scope="session")
def mnist1d_cache(tmp_path_factory) -> Path:
    """A folder holding MNIST-1D, generated once per worker (seconds) for every test that reads it
    (``dataset.cache_dir``); a test that damages a cache uses its own folder."""
    from framework.data.mnist1d import cached_arrays

    folder = tmp_path_factory.mktemp("mnist1d")
    cached_arrays(folder)
    return folder


@pytest.fixture
def run_experiment(compose_config, tmp_path):
    """Compose ``overrides`` and run them in-process with a run dir under ``tmp_path``."""
    from framework.run_context import RunContext
    from framework.runner import run

    def _run(overrides: Sequence[str], run_dir: Path | None = None):
        cfg = compose_config(list(overrides))
        context = RunContext(run_dir=run_dir or tmp_path / "run", overrides=list(overrides))
        return cfg, context, run(cfg, context)

    return _run
