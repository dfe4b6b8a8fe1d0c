"""Where a run writes and how it was asked for: what ``run.py`` reads from Hydra (or a test gives)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunContext:
    run_dir: Path
    overrides: list[str] = field(default_factory=list)
    hydra_dir: Path | None = None  # the .hydra/ folder with the composed config
    # a job of a multirun: its number, the keys its sweep varies and the sweep's MLflow parent run
    job_num: int | None = None
    swept_keys: list[str] = field(default_factory=list)
    parent_run_id: str | None = None
