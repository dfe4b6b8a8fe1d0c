"""Plain helpers for tests: where runs write, and running the app as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# How long a child process (a run, a server starting, a pip install) may take before its test
# calls it hung. Generous on purpose: a test asserts on what a process did, never on how fast a
# shared machine is (a fresh clone's suite ran on a machine loaded 25x, where one short run took
# minutes). Only a hang ends here, with the command that hung named in the failure; pytest-timeout
# (pyproject.toml) is the last resort for a test as a whole.
HANG_S = 1200.0


def store_overrides(tmp_path: Path) -> list[str]:
    """Send MLflow to a fresh SQLite file and artifact folder inside ``tmp_path``."""
    return [
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.artifact_location={tmp_path}/artifacts",
    ]


def run_cli(args: Sequence[str], cwd: Path = ROOT, timeout: float = HANG_S, env=None) -> subprocess.CompletedProcess:
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


def cli_dirs(tmp_path: Path, store: Path | None = None, mlflow: bool = True) -> list[str]:
    """Keep a subprocess run's Hydra dirs and MLflow store inside ``tmp_path`` (or ``store``);
    ``mlflow=False`` for a run with another tracking option (tracking=none has no store keys)."""
    return [
        f"hydra.run.dir={tmp_path}/run",
        f"hydra.sweep.dir={tmp_path}/multirun",
        *(store_overrides(store or tmp_path) if mlflow else []),
        "progress=false",
    ]


def tracking_hook(*trackers):
    """The training loop's one tracking hook over ``trackers`` (no files to log at the end)."""
    from framework.tracking.group import Trackers
    from framework.tracking.hook import TrackingHook

    return TrackingHook(Trackers(list(trackers)), files=[])


def metrics_file(run_dir: Path, epochs: int):
    """The run's metrics.jsonl tracker, as every run of rank 0 has it."""
    from framework.run_context import RunContext
    from framework.tracking.metrics_file import MetricsFileTracker

    return MetricsFileTracker(RunContext(Path(run_dir)), epochs)
