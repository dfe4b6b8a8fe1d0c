"""Entry point: ``python run.py [group=option ...] [key=value ...]`` (``-m`` for a sweep)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import framework.config  # noqa: F401  (registers the schema and the ${project_root:} resolver)
from framework.errors import SecateursError

log = logging.getLogger("secateurs")
_failed_jobs: list = []


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from framework.experiment import RunContext, run

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    context = RunContext(
        run_dir=run_dir,
        overrides=list(hydra_cfg.overrides.task),
        hydra_dir=run_dir / hydra_cfg.output_subdir if hydra_cfg.output_subdir else None,
    )
    try:
        return run(cfg, context)
    except SecateursError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        # One line per mistake, no traceback; other jobs of a multirun go on.
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr, flush=True)
        _failed_jobs.append(error)
        return None


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interrupt:
        # The last checkpoint is kept; the MLflow run is already marked KILLED.
        print("interrupted: the run is marked KILLED; continue it with resume=auto", file=sys.stderr)
        sys.exit(143 if type(interrupt).__name__ == "Terminated" else 130)
    sys.exit(2 if _failed_jobs else 0)
