"""The local record of every metric: ``metrics.jsonl`` in the run dir, one JSON object per epoch.

It is written whatever happens to the tracking server, flushed and fsynced per line, so a run's
metrics survive an MLflow outage or a crash. ``framework.tracking.recover`` replays it into MLflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from framework.errors import StorageError
from framework.training.hooks import Hook

FILENAME = "metrics.jsonl"
STATUS_FILENAME = "run_status.json"


class MetricsFileHook(Hook):
    """Appends each epoch's metrics to ``metrics.jsonl``, and keeps the run's outcome in
    ``run_status.json`` (RUNNING, then FINISHED, FAILED or KILLED, with the planned number of
    epochs), which ``framework.tracking.recover`` reads when the tracking store missed the end."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / FILENAME
        self.status_path = Path(run_dir) / STATUS_FILENAME

    def before_run(self, trainer) -> None:
        self._write_status(trainer, "RUNNING")

    def after_run(self, trainer) -> None:
        self._write_status(trainer, "FINISHED")

    def on_failure(self, trainer, error: BaseException) -> None:
        if isinstance(error, StorageError):
            return  # the disk is what failed: writing more would only fail again
        self._write_status(trainer, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")

    def _write_status(self, trainer, status: str) -> None:
        record = {"status": status, "epochs": trainer.epochs, "finished_epochs": trainer.finished_epochs}
        tmp = self.status_path.with_name(self.status_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.status_path)
        except OSError as error:
            raise StorageError(
                f"cannot write the run status file {self.status_path} ([Errno {error.errno}] "
                f"{error.strerror}); free disk space or make {self.status_path.parent} writable"
            ) from None

    def after_epoch(self, trainer) -> None:
        record = {"epoch": trainer.epoch, **trainer.epoch_metrics}
        append_line(self.path, json.dumps(record, sort_keys=True))


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
        record = json.loads((Path(run_dir) / STATUS_FILENAME).read_text(encoding="utf-8"))
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
