"""The local record of every metric: ``metrics.jsonl`` in the run dir, one JSON object per step.

It is written whatever happens to the tracking server, flushed and fsynced per line, so a run's
metrics survive an MLflow outage or a crash. ``framework.tracking.recover`` replays it into MLflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from framework.errors import StorageError
from framework.run_context import RunContext
from framework.tracking.tracker import RunFile, ServableModel


class MetricsFileTracker:
    """A tracker (:class:`framework.tracking.tracker.Tracker`) that appends each step's metrics to
    ``metrics.jsonl`` (the step under ``"epoch"``), and keeps the run's outcome in
    ``run_status.json`` (RUNNING, then FINISHED, FAILED or KILLED, with the planned number of
    steps and how many finished), which ``framework.tracking.recover`` reads when the tracking
    store missed the end. Every task of rank 0 has one, whatever ``tracking`` says."""

    def __init__(self, context: RunContext, planned_steps: int):
        self.path = context.metrics_file
        self.status_path = context.status_file
        self.planned_steps = planned_steps
        self.finished_steps = 0

    def start(self, step: int) -> None:
        self.finished_steps = step
        self._write_status("RUNNING")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        append_line(self.path, json.dumps({"epoch": step, **metrics}, sort_keys=True))
        self.finished_steps = step + 1

    def log_files(self, files: Sequence[RunFile]) -> None:
        pass  # they are in the run folder already

    def log_model(self, model: ServableModel) -> None:
        pass  # the deploy step's files are in the run folder already

    def finish(self, status: str, error: BaseException | None = None) -> None:
        if isinstance(error, StorageError):
            return  # the disk is what failed: writing more would only fail again
        self._write_status(status)

    def where(self) -> list[str]:
        return []  # the run folder's line says where this is

    def _write_status(self, status: str) -> None:
        record = {"status": status, "epochs": self.planned_steps, "finished_epochs": self.finished_steps}
        tmp = self.status_path.with_name(self.status_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.status_path)
        except OSError as error:
            raise StorageError(
                f"cannot write the run status file {self.status_path} ([Errno {error.errno}] "
                f"{error.strerror}); free disk space or make {self.status_path.parent} writable"
            ) from None


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to ``path``, durably; a StorageError (one line) when it cannot be written.

    A line left unfinished by a crash or a full disk is closed first, so that the new record
    starts on a line of its own instead of being glued to (and lost with) the torn one.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as handle:
            handle.seek(0, os.SEEK_END)
            torn = handle.tell() > 0 and _last_byte(handle) != b"\n"
            handle.write((b"\n" if torn else b"") + line.encode("utf-8") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        reason = f"[Errno {error.errno}] {error.strerror}" if error.errno else str(error)
        raise StorageError(
            f"cannot write the metrics file {path} ({reason}); the epochs logged before are kept; "
            f"free disk space or make {path.parent} writable, then continue with resume=auto"
        ) from None


def _last_byte(handle) -> bytes:
    handle.seek(-1, os.SEEK_END)
    last = handle.read(1)
    handle.seek(0, os.SEEK_END)
    return last


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """One record per epoch; where a resumed run wrote an epoch twice, the later line wins."""
    by_epoch: dict[int, dict[str, float]] = {}
    for record in _records(Path(path)):
        by_epoch[int(record["epoch"])] = record
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def read_status(run_dir: str | Path) -> dict[str, object] | None:
    """What ``run_status.json`` in ``run_dir`` says, or None when it is missing or unreadable."""
    try:
        record = json.loads(RunContext(Path(run_dir)).status_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _records(path: Path) -> Iterator[dict[str, float]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                # A line cut short by a crash while writing: everything before it is intact.
                continue
