"""Plain helpers for tests: where runs write, and running the app as a user would."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# How long a child process (a run, a server starting, a pip install) may take before its test
# calls it hung. Generous on purpose: a test asserts on what a process did, never on how fast a
# shared machine is (a fresh clone's suite ran on a machine loaded 25x, where one short run took
# minutes). Only a hang ends here, with the command that hung named in the failure; pytest-timeout
# (pyproject.toml) is the last resort for a test as a whole.
HANG_S = 1200.0


_EMPTY_STORE: list[Path] = []


def empty_store_copy(db: Path) -> None:
    """Place an empty MLflow SQLite store at ``db`` (unless one is there): a copy of one this process
    created once. Creating MLflow's tables and running its migrations costs every new store about
    1.5 s; a test about creating a store (two first connections racing) asks for a fresh one."""
    if db.exists():
        return
    if not _EMPTY_STORE:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        folder = Path(tempfile.mkdtemp(prefix="empty-mlflow-store-"))
        atexit.register(shutil.rmtree, folder, True)
        template = folder / "mlflow.db"
        SqlAlchemyStore(f"sqlite:///{template}", str(folder / "artifacts")).engine.dispose()
        _EMPTY_STORE.append(template)
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_EMPTY_STORE[0], db)


def store_overrides(tmp_path: Path, fresh: bool = False) -> list[str]:
    """Send MLflow to a SQLite file and artifact folder inside ``tmp_path``: an empty store made from
    a template, or with ``fresh=True`` none at all, so that the run creates it."""
    if not fresh:
        empty_store_copy(tmp_path / "mlflow.db")
    return [
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.artifact_location={tmp_path}/artifacts",
    ]


def run_cli(args: Sequence[str], cwd: Path = ROOT, timeout: float = HANG_S, env=None) -> subprocess.CompletedProcess:
    """Run ``python run.py args`` as a user would, in a process of its own; returns the finished
    process (text output). The process is forked from an interpreter that has imported torch, MLflow
    and Hydra already (:mod:`zygote`); a test about what an interpreter does at start-up (what it
    imports, ``sys.path``, a variable read at import) starts ``sys.executable`` itself."""
    import zygote

    full_env = dict(os.environ)
    full_env.pop("HYDRA_FULL_ERROR", None)
    full_env.update(env or {})
    return zygote.run([str(ROOT / "run.py"), *args], cwd=Path(cwd), env=full_env, timeout=timeout)


def cli_dirs(tmp_path: Path, store: Path | None = None, mlflow: bool = True, fresh_store: bool = False) -> list[str]:
    """Keep a subprocess run's Hydra dirs and MLflow store inside ``tmp_path`` (or ``store``);
    ``mlflow=False`` for a run with another tracking option (tracking=none has no store keys);
    ``fresh_store=True`` leaves creating the store to the run."""
    return [
        f"hydra.run.dir={tmp_path}/run",
        f"hydra.sweep.dir={tmp_path}/multirun",
        *(store_overrides(store or tmp_path, fresh=fresh_store) if mlflow else []),
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
