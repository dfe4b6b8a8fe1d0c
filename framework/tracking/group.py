"""The run's trackers, driven together: every call goes to each tracker in order (the metrics file
first, so the local record is written before a remote store is tried)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from framework.tracking.tracker import FAILED, FINISHED, KILLED, ResumableTracker, RunFile, ServableModel, Tracker


def failure_status(error: BaseException) -> str:
    """KILLED for Ctrl-C and SIGTERM (a KeyboardInterrupt), FAILED for anything else."""
    return KILLED if isinstance(error, KeyboardInterrupt) else FAILED


class Trackers:
    def __init__(self, trackers: Sequence[Tracker]):
        self.trackers = list(trackers)

    def __len__(self) -> int:
        return len(self.trackers)

    def start(self, step: int) -> None:
        for tracker in self.trackers:
            tracker.start(step)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        values = {key: float(value) for key, value in metrics.items()}
        for tracker in self.trackers:
            tracker.log_metrics(dict(values), step)

    def log_files(self, files: Sequence[RunFile]) -> None:
        existing = [file for file in files if file.path.exists()]
        if existing:
            for tracker in self.trackers:
                tracker.log_files(existing)

    def log_model(self, model: ServableModel) -> None:
        for tracker in self.trackers:
            tracker.log_model(model)

    def finish(self, status: str = FINISHED, error: BaseException | None = None) -> None:
        """Every tracker hears the end; after a failure one tracker's own error must neither hide
        the run's nor keep the others from closing their record."""
        for tracker in self.trackers:
            if error is None:
                tracker.finish(status, None)
                continue
            try:
                tracker.finish(status, error)
            except Exception as tracker_error:
                print(f"warning: {type(tracker).__name__}.finish failed: {tracker_error}", file=sys.stderr)

    def fail(self, error: BaseException) -> None:
        self.finish(failure_status(error), error)

    def where(self) -> list[str]:
        return [line for tracker in self.trackers for line in tracker.where()]

    # -- what a checkpoint keeps --------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {t.name: t.state_dict() for t in self.trackers if isinstance(t, ResumableTracker)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for tracker in self.trackers:
            if isinstance(tracker, ResumableTracker) and tracker.name in state:
                tracker.load_state_dict(state[tracker.name])
