"""One job of a multirun, as a sweeper needs it: ``run.py`` runs the job with the runner, then hands
the outcome here.

A failed job must neither stop the sweep nor pass for a result, whichever sweeper and launcher run it:

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
from typing import Any

from framework.errors import SecateursError, short_reason
from framework.sweeps.objective import describe, objective_value
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


class SweepJob:
    """A job of a multirun: what its run needs to know of the sweep, and the record of its outcome.

    ``run.py``: ``job = SweepJob(hydra_cfg)``; run with ``job.swept_keys`` and
    ``job.parent_run_id``; then ``return job.finished(final, cfg.optimized_metric)``, or
    ``return job.failed(error)`` in the ``except`` clause; ``job.write_record()`` in ``finally``."""

    def __init__(self, hydra_cfg: Any) -> None:
        self.num = int(hydra_cfg.job.num)
        self.run_dir = Path(hydra_cfg.runtime.output_dir)
        sweep = read_sweep_info(hydra_cfg.sweep.dir)
        self.swept_keys: list[str] = list(sweep.swept_keys) if sweep else []
        self.parent_run_id: str | None = sweep.parent_run_id if sweep else None
        self.record = JobRecord(
            num=self.num, overrides=list(hydra_cfg.overrides.task), status=FAILED, run_dir=str(self.run_dir)
        )

    def finished(self, final: dict[str, float], optimized_metric: Any) -> Any:
        """The value the sweeper reads (a float, or a list for several metrics); an
        :class:`~framework.sweeps.objective.ObjectiveError` when the run did not log it."""
        self.record.metrics = {k: float(v) for k, v in final.items()}
        self.record.objective = objective_value(final, optimized_metric)
        self.record.status = FINISHED
        log.info("optimized_metric %s = %s", optimized_metric, describe(self.record.objective))
        return self.record.objective

    def failed(self, error: Exception) -> FailedJob:
        """Called in the ``except`` clause: the error's line in the record, the value a sweeper reads
        as a failed trial. With ``HYDRA_FULL_ERROR=1`` the error is raised instead."""
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise error
        if isinstance(error, SecateursError):
            self.record.error = " / ".join(line for line in str(error).splitlines() if line.strip())
            log.error("job %d failed: %s", self.num, self.record.error)
        else:  # a crash: the traceback goes to the job's log, one line to the report
            self.record.error = f"{type(error).__name__}: {short_reason(error, 300)}"
            log.exception("job %d failed", self.num)
        return FailedJob(self.num, self.record.error)

    def write_record(self) -> None:
        """``job.json``, however the job ended (an interrupted one is FAILED, with how far it got)."""
        self.record.run_id = _mlflow_run_id(self.run_dir)
        if self.record.status == FAILED:
            self.record.metrics = _last_epoch(self.run_dir)
        write_job_record(self.record)


def _mlflow_run_id(run_dir: Path) -> str | None:
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
