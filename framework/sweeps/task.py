"""The task function behind ``run.py``: one run, or one job of a multirun.

A single run keeps the command-line contract: a user mistake prints one line and the process exits
2. In a multirun, a failed job must neither stop the sweep nor pass for a result, whichever sweeper
and launcher run it:

* it returns a :class:`FailedJob` instead of raising, because Hydra's basic sweeper stops the
  whole sweep at the first exception it reads from a job;
* Optuna's sweeper calls ``float()`` on that value, which raises, so the trial is recorded FAIL;
* the job writes ``job.json`` with its error line, which the sweep callback, in the launching
  process, reports and turns into a non-zero exit status.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from framework.config import validate
from framework.errors import SecateursError, short_reason
from framework.sweeps import outcome
from framework.sweeps.objective import ObjectiveError, describe, objective_value
from framework.sweeps.records import FAILED, FINISHED, JobRecord, read_sweep_info, write_job_record

log = logging.getLogger("secateurs")


class FailedJob:
    """What a failed job of a multirun returns: never a number, whatever asks."""

    def __init__(self, num: int, error: str):
        self.num, self.error = num, error

    def __float__(self) -> float:
        raise ValueError(f"job {self.num} failed: {self.error}")

    def __iter__(self):  # a multi-objective sweeper reads a list of floats
        raise TypeError(f"job {self.num} failed: {self.error}")

    def __repr__(self) -> str:
        return f"job {self.num} failed: {self.error}"


def run_task(cfg: DictConfig) -> Any:
    """Run ``cfg`` as Hydra launched it; returns the final ``optimized_metric`` (a float, or a list
    for several), None after a single run's user mistake, a :class:`FailedJob` in a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return _single_run(cfg, hydra_cfg, run_dir, overrides)
    num = int(hydra_cfg.job.num)
    record = JobRecord(num=num, overrides=overrides, status=FAILED, run_dir=str(run_dir))
    try:
        final = _run(cfg, hydra_cfg, run_dir, overrides, job_num=num)
        record.metrics = {k: float(v) for k, v in final.items()}
        record.objective = objective_value(final, cfg.optimized_metric)
        record.status = FINISHED
        log.info("optimized_metric %s = %s", cfg.optimized_metric, describe(record.objective))
        return record.objective
    except SecateursError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        record.error = " / ".join(line for line in str(error).splitlines() if line.strip())
        log.error("job %d failed: %s", num, record.error)
    except Exception as error:  # a crash: the traceback goes to the job's log, one line to the report
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        record.error = f"{type(error).__name__}: {short_reason(error, 300)}"
        log.exception("job %d failed", num)
    finally:
        record.run_id = _mlflow_run_id(run_dir)
        if record.status == FAILED:
            record.metrics = _last_epoch(run_dir)  # how far it got
        write_job_record(record)
    return FailedJob(num, record.error)


def _single_run(cfg: DictConfig, hydra_cfg, run_dir: Path, overrides) -> Optional[Any]:
    try:
        final = _run(cfg, hydra_cfg, run_dir, overrides, job_num=None)
    except SecateursError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        # One line per mistake, no traceback; under torchrun only rank 0 says it (every rank exits 2).
        for line in str(error).splitlines() if os.environ.get("RANK", "0") in ("", "0") else ():
            print(f"error: {line}", file=sys.stderr, flush=True)
        outcome.user_errors.append(str(error))
        return None
    try:
        return objective_value(final, cfg.optimized_metric)
    except ObjectiveError as error:  # the run itself succeeded; only a sweeper would need the value
        log.warning("%s", error)
        return None


def _run(cfg: DictConfig, hydra_cfg, run_dir: Path, overrides, job_num: Optional[int]):
    validate(cfg)  # ranges and cross-field rules, before torch is even imported
    from framework.experiment import RunContext, run

    sweep = read_sweep_info(hydra_cfg.sweep.dir) if job_num is not None else None
    context = RunContext(
        run_dir=run_dir,
        overrides=overrides,
        hydra_dir=run_dir / hydra_cfg.output_subdir if hydra_cfg.output_subdir else None,
        job_num=job_num,
        swept_keys=list(sweep.swept_keys) if sweep else [],
        parent_run_id=sweep.parent_run_id if sweep else None,
    )
    return run(cfg, context)


def _mlflow_run_id(run_dir: Path) -> Optional[str]:
    hook = sys.modules.get("framework.tracking.mlflow_hook")  # imported only when the job tracked
    if hook is None:
        return None
    path = run_dir / hook.RUN_ID_FILE
    return path.read_text().strip() if path.is_file() else None


def _last_epoch(run_dir: Path) -> dict:
    from framework.tracking.metrics_file import FILENAME, read_metrics

    path = run_dir / FILENAME
    epochs = read_metrics(path) if path.is_file() else []
    return {k: float(v) for k, v in epochs[-1].items() if k != "epoch"} if epochs else {}
