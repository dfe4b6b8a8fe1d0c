"""The local record of every metric: ``metrics.jsonl`` in the run dir, one JSON object per epoch.

It is written whatever happens to the tracking server, flushed and fsynced per line, so a run's
metrics survive an MLflow outage or a crash. ``framework.tracking.recover`` replays it into MLflow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterator, List

from framework.training.hooks import Hook

FILENAME = "metrics.jsonl"


class MetricsFileHook(Hook):
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / FILENAME

    def after_epoch(self, trainer) -> None:
        record = {"epoch": trainer.epoch, **trainer.epoch_metrics}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def read_metrics(path: str | Path) -> List[Dict[str, float]]:
    """One record per epoch; where a resumed run wrote an epoch twice, the later line wins."""
    by_epoch: Dict[int, Dict[str, float]] = {}
    for record in _records(Path(path)):
        by_epoch[int(record["epoch"])] = record
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _records(path: Path) -> Iterator[Dict[str, float]]:
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
