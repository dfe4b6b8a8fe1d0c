"""``profile_steps=N`` (``debug=profile``): the torch profiler records the first N training steps
of the run and writes ``profile/trace.json`` (open it in chrome://tracing or Perfetto) and
``profile/ops.txt`` (the operators by total time) into the run folder."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from framework.training.hooks import Hook

log = logging.getLogger(__name__)


class ProfilerHook(Hook):
    def __init__(self, out_dir: str | Path, steps: int):
        self.out_dir = Path(out_dir)
        self.steps = steps
        self.recorded = 0
        self._profiler: torch.profiler.profile | None = None

    def before_run(self, trainer) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if trainer.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._profiler = torch.profiler.profile(activities=activities, record_shapes=True)
        self._profiler.__enter__()

    def after_step(self, trainer) -> None:
        if self._profiler is None:
            return
        self.recorded += 1
        if self.recorded >= self.steps:
            self._finish()

    def after_run(self, trainer) -> None:  # fewer steps in the whole run than asked
        self._finish()

    def on_failure(self, trainer, error: BaseException) -> None:
        if self._profiler is not None:
            self._profiler.__exit__(None, None, None)
            self._profiler = None

    def _finish(self) -> None:
        if self._profiler is None:
            return
        profiler, self._profiler = self._profiler, None
        profiler.__exit__(None, None, None)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        profiler.export_chrome_trace(str(self.out_dir / "trace.json"))
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        (self.out_dir / "ops.txt").write_text(table + "\n", encoding="utf-8")
        log.info("profiled %d training steps: %s (trace.json, ops.txt)", self.recorded, self.out_dir)
