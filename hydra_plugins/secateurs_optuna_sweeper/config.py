"""The sweeper's settings and the samplers a preset picks (``hydra/sweeper/sampler=tpe``, ...).

The keys are those of Hydra's former Optuna plugin, so presets written for it keep their meaning:
``direction``, ``n_trials``, ``n_jobs``, ``sampler``, ``params``, ``study_name``, ``storage``.
Each sampler node carries the scalar arguments of the Optuna class it names; settings that are
Python objects (callbacks, mutation operators) are left to Optuna's defaults.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

SWEEPER_NAME = "secateurs_optuna"


@dataclass
class SamplerConf:
    _target_: str = MISSING
    # Hydra hands the sweeper a factory, not a sampler: the grid sampler needs the search space,
    # which is known only once the sweep's overrides are read
    _partial_: bool = True
    seed: int | None = None


@dataclass
class TPESamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.TPESampler"
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    group: bool = False
    # parallel trials see each other's pending points as if they had scored badly, so a batch
    # of n_jobs trials does not crowd one spot
    constant_liar: bool = True


@dataclass
class RandomSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class GPSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.GPSampler"
    n_startup_trials: int = 10
    deterministic_objective: bool = False


@dataclass
class CmaEsSamplerConf(SamplerConf):
    """Needs the ``cmaes`` package (``pip install cmaes``)."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    sigma0: float | None = None
    n_startup_trials: int = 1
    restart_strategy: str | None = None
    popsize: int | None = None
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False


@dataclass
class QMCSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = False


@dataclass
class NSGAIISamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class NSGAIIISamplerConf(NSGAIISamplerConf):
    _target_: str = "optuna.samplers.NSGAIIISampler"
    dividing_parameter: int = 3


@dataclass
class GridSamplerConf(SamplerConf):
    """Every combination of the (discrete) search space; the sweeper fills in the grid."""

    _target_: str = "optuna.samplers.GridSampler"


@dataclass
class BruteForceSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.BruteForceSampler"
    avoid_premature_stop: bool = False


SAMPLERS = {
    "tpe": TPESamplerConf,
    "random": RandomSamplerConf,
    "gp": GPSamplerConf,
    "cmaes": CmaEsSamplerConf,
    "qmc": QMCSamplerConf,
    "nsgaii": NSGAIISamplerConf,
    "nsgaiii": NSGAIIISamplerConf,
    "grid": GridSamplerConf,
    "bruteforce": BruteForceSamplerConf,
}


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.secateurs_optuna_sweeper.sweeper.OptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: SamplerConf = MISSING
    # minimize | maximize, or a list of them in the order of the task's objectives
    direction: Any = "minimize"
    # None: in memory. An SQLAlchemy URL (sqlite:///optuna.db, postgresql://...) or the path of a
    # journal file (optuna.log) keeps the study: parallel sweepers share it, a rerun continues it.
    storage: str | None = None
    study_name: str | None = None
    n_trials: int = 20
    # trials asked for at once, launched together (in parallel with a parallel launcher)
    n_jobs: int = 1
    # the search space: key -> choice(...) | a,b,c | range(...) | interval(...) | tag(log, interval(...))
    params: dict[str, str] | None = None


def register() -> None:
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name=SWEEPER_NAME, node=OptunaSweeperConf, provider="secateurs")
    for name, node in SAMPLERS.items():
        store.store(group="hydra/sweeper/sampler", name=name, node=node, provider="secateurs")


register()
