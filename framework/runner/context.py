"""Where a run writes and how it was asked for: what ``run.py`` reads from Hydra (or a test gives)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional


@dataclass
class RunContext:
    run_dir: Path
    overrides: List[str] = field(default_factory=list)
    hydra_dir: Optional[Path] = None  # the .hydra/ folder with the composed config
    # a job of a multirun: its number, the keys its sweep varies and the sweep's MLflow parent run
    job_num: Optional[int] = None
    swept_keys: List[str] = field(default_factory=list)
    parent_run_id: Optional[str] = None
