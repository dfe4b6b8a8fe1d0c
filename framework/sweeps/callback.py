"""The Hydra callback that makes a multirun one thing (``hydra.callbacks.sweep`` in conf/config.yaml).

In the launching process, before any job starts (``on_multirun_start``): the MLflow store and
experiment are created once, under the store's file lock, and a parent run is opened; both go to
``<sweep dir>/sweep.json`` for the jobs. In each job's process (``on_job_start``): log lines get
the job number. Back in the launching process once every job has ended (``on_multirun_end``):
one line per failed job, the summary table and Pareto plot on the parent run, and the exit status.

Hydra's launchers run ``on_job_*`` where the job runs (this process for the basic launcher, a
worker for joblib, a submitit process), and ``on_multirun_*`` in the process that launched them,
so everything a job tells the end of the sweep goes through files in the sweep dir.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from framework.errors import SecateursError
from framework.sweeps import outcome
from framework.sweeps.records import (
    FINISHED,
    SweepInfo,
    read_job_records,
    read_sweep_info,
    shown_overrides,
    write_sweep_info,
)
from framework.tracking.trackers import NO_TRACKING_TARGET, uses_mlflow

log = logging.getLogger("secateurs")
_open_sweeps: list[Path] = []  # started here and not finished yet (run.py finishes them if Hydra raised)
_sweep_locks: dict[Path, Any] = {}  # sweep dir -> the lock this process holds on it until the sweep ends


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from framework.sweeps.card_start import card_start_problems

        problems = card_start_problems(config)  # a card's settings and data files, before any job
        for line in problems:
            print(f"error: {line}", file=sys.stderr, flush=True)
        if problems:
            sys.exit(2)
        try:
            start_sweep(config)
        except SecateursError as error:  # the store cannot be reached: one line, before any job
            print(f"error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.mode) == "RunMode.MULTIRUN":
            tag_log_lines(f"job {config.hydra.job.num}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish_sweep(Path(config.hydra.sweep.dir))
        if OmegaConf.select(config, "card.enabled"):
            finish_card_of(Path(config.hydra.sweep.dir))


def short_name(target: str | None) -> str:
    """``hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher`` -> ``JoblibLauncher``."""
    return str(target or "").rsplit(".", 1)[-1]


def swept_keys(overrides: Iterable[str], sweeper_params: Any = None) -> list[str]:
    """The keys a sweep varies: sweep overrides (``a=1,2``, ``range(...)``) and the sweeper's own
    search space (Optuna's ``hydra.sweeper.params``), in command-line order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides)) if o.is_sweep_override()]
    for key in sweeper_params or {}:
        if key not in keys:
            keys.append(str(key))
    return keys


def lock_sweep_dir(sweep_dir: Path) -> None:
    """One sweep per sweep dir: a second one would share job folders, ``sweep.json`` and the
    study's trials of this dir with the first. The kernel drops the lock when its holder dies, so a
    killed sweep never blocks its own ``resume=auto``."""
    from framework.errors import RunDirInUseError
    from framework.process.run_lock import lock_holder, lock_run_dir

    try:
        _sweep_locks[sweep_dir] = lock_run_dir(sweep_dir)
    except RunDirInUseError:
        raise RunDirInUseError(
            f"hydra.sweep.dir={sweep_dir} is in use by another sweep (pid {lock_holder(sweep_dir)}); wait for it "
            "to end, or give this sweep another hydra.sweep.dir"
        ) from None


def start_sweep(config: DictConfig) -> SweepInfo:
    sweep_dir = Path(config.hydra.sweep.dir).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock_sweep_dir(sweep_dir)
    overrides = [str(o) for o in config.hydra.overrides.task]
    params = OmegaConf.select(config, "hydra.sweeper.params")
    info = SweepInfo(
        sweep_dir=str(sweep_dir),
        swept_keys=swept_keys(overrides, OmegaConf.to_container(params) if params else None),
        overrides=overrides,
        sweeper=short_name(OmegaConf.select(config, "hydra.sweeper._target_")),
        launcher=short_name(OmegaConf.select(config, "hydra.launcher._target_")),
    )
    earlier = read_sweep_info(sweep_dir)
    if not uses_mlflow(config.get("tracking")):
        if OmegaConf.select(config, "tracking._target_") not in (None, NO_TRACKING_TARGET):
            # a tracker of yours tracks each job; grouping the jobs under a parent run is MLflow's
            log.info(
                "sweep: no parent run (sweep parent runs are MLflow-only; tracking._target_=%s)",
                config.tracking._target_,
            )
    else:
        from framework.sweeps.parent import reopen_parent_run, start_parent_run

        if earlier and earlier.parent_run_id and earlier.tracking_uri == config.tracking.uri:
            # the same sweep dir again (resume=auto after a crash): its jobs continue their runs,
            # so the sweep continues its parent run
            info.tracking_uri, info.experiment_id = earlier.tracking_uri, earlier.experiment_id
            info.parent_run_id = earlier.parent_run_id
            reopen_parent_run(info)
        else:
            start_parent_run(info, config.tracking.uri, config.tracking.experiment, config.tracking.artifact_location)
        log.info("sweep: MLflow parent run %s in %s", info.parent_run_id, info.tracking_uri)
    write_sweep_info(info)
    _open_sweeps.append(sweep_dir)
    return info


def finish_sweep(sweep_dir: Path, interrupted: bool = False) -> list[str]:
    """Report failed jobs, write the summary (and log it to the parent run), record the outcome.
    Returns the failure lines."""
    sweep_dir = Path(sweep_dir).resolve()
    if sweep_dir in _open_sweeps:
        _open_sweeps.remove(sweep_dir)
    lock = _sweep_locks.pop(sweep_dir, None)
    info = read_sweep_info(sweep_dir) or SweepInfo(sweep_dir=str(sweep_dir))
    records = read_job_records(sweep_dir)
    failures = [
        f"error: job {r.num} ({shown_overrides(r.overrides)}) failed: {r.error}"
        for r in records
        if r.status != FINISHED
    ]
    from framework.sweeps.report import summarise

    warning = summarise(info, records, sweep_dir / "summary", interrupted=interrupted)
    for line in failures:
        print(line, file=sys.stderr, flush=True)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    outcome.failed_jobs.extend(failures)
    if interrupted and not failures:
        outcome.failed_jobs.append("error: the sweep stopped before all its jobs ended")
    if lock is not None:
        lock.release()
    return failures


def finish_card_of(sweep_dir: Path) -> None:
    """The report card of a card sweep, after its summary (docs/report_card.md)."""
    from framework.sweeps.report_card import finish_card

    sweep_dir = Path(sweep_dir).resolve()
    info = read_sweep_info(sweep_dir) or SweepInfo(sweep_dir=str(sweep_dir))
    title = f"sweep {sweep_dir.name}: {shown_overrides(info.overrides)}"
    warning = finish_card(sweep_dir, info.tracking_uri, info.parent_run_id, title)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)


def finish_open_sweeps() -> None:
    """Close sweeps that Hydra left without ``on_multirun_end`` (a sweeper raised, Ctrl-C)."""
    for sweep_dir in list(_open_sweeps):
        finish_sweep(sweep_dir, interrupted=True)


class _JobTaggedFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter, tag: str):
        super().__init__()
        self.inner, self.tag = inner, tag

    def format(self, record: logging.LogRecord) -> str:
        return f"[{self.tag}]" + self.inner.format(record)


def tag_log_lines(tag: str) -> None:
    """Prefix every line the root logger's handlers write with ``[job N]``: parallel jobs share
    one terminal. Hydra configures logging afresh for each job, so this is per job."""
    for handler in logging.getLogger().handlers:
        inner = handler.formatter or logging.Formatter()
        if isinstance(inner, _JobTaggedFormatter):
            inner = inner.inner
        handler.setFormatter(_JobTaggedFormatter(inner, tag))
