"""The plugin class Hydra instantiates for ``hydra/sweeper=secateurs_optuna``.

It only keeps the settings and the launcher; the search itself (``_study.py``) imports Optuna,
so it is loaded when a sweep starts, never by a single run.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Asks Optuna for ``n_jobs`` trials at a time, runs them as one batch of Hydra jobs through
    the configured launcher, and tells Optuna each job's value (or FAIL)."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None,
    ) -> None:
        self.sampler_conf = sampler
        self.direction = direction
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.params = params
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> Any:
        from ._study import SweepSetupError, run_study

        try:
            return run_study(self, arguments)
        except SweepSetupError as error:  # bad settings: one line each, before any trial is asked for
            for line in str(error).splitlines():
                print(f"error: {line}", file=sys.stderr, flush=True)
            sys.exit(2)
