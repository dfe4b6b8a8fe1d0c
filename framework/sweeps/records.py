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
from typing import Any

from framework.errors import SecateursError

SWEEP_FILE = "sweep.json"
JOB_FILE = "job.json"
FINISHED, FAILED = "FINISHED", "FAILED"


@dataclass
class SweepInfo:
    sweep_dir: str
    swept_keys: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # the command line's, sweep lists included
    sweeper: str = ""
    launcher: str = ""
    tracking_uri: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None


@dataclass
class JobRecord:
    num: int
    overrides: list[str]
    status: str  # FINISHED | FAILED
    error: str | None = None
    objective: Any = None  # a float, or a list of floats for several optimized metrics
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    run_dir: str = ""


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Written whole or not at all: a reader in another process never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".tmp{os.getpid()}")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def write_sweep_info(info: SweepInfo) -> Path:
    path = Path(info.sweep_dir) / SWEEP_FILE
    _write_json(path, asdict(info))
    return path


class RecordError(SecateursError):
    """A sweep.json or job.json that is not what this program writes (edited, truncated, binary)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


# field -> the values this program writes there; anything else in a file is refused, never merged
_SWEEP_FIELDS = {
    "sweep_dir": lambda v: isinstance(v, str),
    "swept_keys": _is_strings,
    "overrides": _is_strings,
    "sweeper": lambda v: isinstance(v, str),
    "launcher": lambda v: isinstance(v, str),
    "tracking_uri": _optional_str,
    "experiment_id": _optional_str,
    "parent_run_id": _optional_str,
}
_JOB_FIELDS = {
    "num": lambda v: type(v) is int and v >= 0,
    "overrides": _is_strings,
    "status": lambda v: v in (FINISHED, FAILED),
    "error": _optional_str,
    "objective": lambda v: v is None or _is_number(v) or (isinstance(v, list) and all(map(_is_number, v))),
    "metrics": lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_number(x) for k, x in v.items()),
    "run_id": _optional_str,
    "run_dir": lambda v: isinstance(v, str),
}


def _read_record(path: Path, fields: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    """The checked fields of a record file; one-line RecordError for anything we did not write."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RecordError(f"{path} is not a record this program writes ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path} holds a {type(data).__name__}; expected a mapping of {', '.join(fields)}")
    unknown = sorted(set(data) - set(fields))
    missing = [key for key in required if key not in data]
    if unknown or missing:
        raise RecordError(f"{path}: unknown keys {unknown} / missing keys {missing}; allowed keys: {', '.join(fields)}")
    for key, value in data.items():
        if not fields[key](value):
            raise RecordError(f"{path}: {key}={value!r:.80} is not a value this program writes there")
    return data


def read_sweep_info(sweep_dir: str | Path) -> SweepInfo | None:
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        return None
    return SweepInfo(**_read_record(path, _SWEEP_FIELDS, ("sweep_dir",)))


def write_job_record(record: JobRecord) -> Path:
    path = Path(record.run_dir) / JOB_FILE
    _write_json(path, asdict(record))
    return path


def read_job_records(sweep_dir: str | Path) -> list[JobRecord]:
    """Every job of the sweep, by number. A job dir without ``job.json`` (its process died before
    it could write one) counts as failed."""
    from omegaconf import OmegaConf

    records = []
    for overrides_file in sorted(Path(sweep_dir).glob("*/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        path = job_dir / JOB_FILE
        if path.exists():
            try:
                records.append(JobRecord(**_read_record(path, _JOB_FIELDS, ("num", "overrides", "status"))))
            except RecordError as error:  # counted as failed, its figures never merged into the summary
                records.append(
                    JobRecord(
                        num=int(job_dir.name) if job_dir.name.isdigit() else -1,
                        overrides=[str(o) for o in OmegaConf.load(overrides_file)],
                        status=FAILED,
                        error=f"record refused: {error}",
                        run_dir=str(job_dir),
                    )
                )
            continue
        if not job_dir.name.isdigit():
            continue
        records.append(
            JobRecord(
                num=int(job_dir.name),
                overrides=[str(o) for o in OmegaConf.load(overrides_file)],
                status=FAILED,
                error="no result: the job's process ended before it finished (killed, out of memory?)",
                run_dir=str(job_dir),
            )
        )
    return sorted(records, key=lambda r: r.num)


def shown_overrides(overrides: list[str]) -> str:
    """A job's overrides as a person reads them: values as typed, without where-to-write noise."""
    from framework.tracking.params import as_typed

    return (
        " ".join(as_typed(o) for o in overrides if not o.startswith(("hydra.", "tracking.", "progress=")))
        or "(no overrides)"
    )
