"""What a sweep leaves on disk for whoever summarises it, possibly in another process or machine.

* ``<sweep dir>/sweep.json`` (:class:`SweepInfo`), written by the launching process before any job
  starts: the MLflow parent run, the store, which keys the sweep varies.
* ``<job dir>/job.json`` (:class:`JobRecord`), written by each job when it ends: its number,
  overrides, status, error line, objective and final metrics.

Files rather than memory, because joblib and submitit run jobs in other processes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

SWEEP_FILE = "sweep.json"
JOB_FILE = "job.json"
FINISHED, FAILED = "FINISHED", "FAILED"


@dataclass
class SweepInfo:
    sweep_dir: str
    swept_keys: List[str] = field(default_factory=list)
    overrides: List[str] = field(default_factory=list)  # the command line's, sweep lists included
    sweeper: str = ""
    launcher: str = ""
    tracking_uri: Optional[str] = None
    experiment_id: Optional[str] = None
    parent_run_id: Optional[str] = None


@dataclass
class JobRecord:
    num: int
    overrides: List[str]
    status: str  # FINISHED | FAILED
    error: Optional[str] = None
    objective: Any = None  # a float, or a list of floats for several optimized metrics
    metrics: Dict[str, float] = field(default_factory=dict)
    run_id: Optional[str] = None
    run_dir: str = ""


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    """Written whole or not at all: a reader in another process never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".tmp{os.getpid()}")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def write_sweep_info(info: SweepInfo) -> Path:
    path = Path(info.sweep_dir) / SWEEP_FILE
    _write_json(path, asdict(info))
    return path


def read_sweep_info(sweep_dir: str | Path) -> Optional[SweepInfo]:
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        return None
    return SweepInfo(**json.loads(path.read_text()))


def write_job_record(record: JobRecord) -> Path:
    path = Path(record.run_dir) / JOB_FILE
    _write_json(path, asdict(record))
    return path


def read_job_records(sweep_dir: str | Path) -> List[JobRecord]:
    """Every job of the sweep, by number. A job dir without ``job.json`` (its process died before
    it could write one) counts as failed."""
    records = []
    for overrides_file in sorted(Path(sweep_dir).glob("*/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        path = job_dir / JOB_FILE
        if path.is_file():
            records.append(JobRecord(**json.loads(path.read_text())))
            continue
        if not job_dir.name.isdigit():
            continue
        from omegaconf import OmegaConf

        records.append(JobRecord(
            num=int(job_dir.name),
            overrides=[str(o) for o in OmegaConf.load(overrides_file)],
            status=FAILED,
            error="no result: the job's process ended before it finished (killed, out of memory?)",
            run_dir=str(job_dir),
        ))
    return sorted(records, key=lambda r: r.num)


def shown_overrides(overrides: List[str]) -> str:
    """A job's overrides as a person reads them: values as typed, without where-to-write noise."""
    from framework.tracking.params import as_typed

    return " ".join(as_typed(o) for o in overrides
                    if not o.startswith(("hydra.", "tracking.", "progress="))) or "(no overrides)"
