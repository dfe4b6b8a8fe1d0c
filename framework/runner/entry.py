"""``run(cfg, context)``: the config's own checks first, then the run.

The checks (unset ``???`` values, ranges and cross-field rules) import neither torch nor MLflow,
so a mistake on the command line is answered in a moment; the run's parts (torch, the loop,
the trackers) are imported only once the config has passed.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from framework.config import validate
from framework.errors import ConfigError
from framework.run_context import RunContext


def run(cfg: DictConfig, context: RunContext) -> dict[str, float]:
    """Run ``cfg`` (``cfg.task``) in ``context.run_dir``; returns the last epoch's metrics (the
    analysis's headline figures for task=sensitivity)."""
    refuse_unset_mandatory_values(cfg)
    validate(cfg)  # ranges and cross-field rules, before anything is built
    from framework.runner.recipe import run_checked

    return run_checked(cfg, context)


def refuse_unset_mandatory_values(cfg: DictConfig) -> None:
    """A ``???`` left unset (``dataset=imagefolder`` without ``dataset.root``) is one line naming
    every such key, not OmegaConf's traceback from wherever it is first read."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} must be set (the chosen options leave {'them' if len(missing) > 1 else 'it'} "
            f"'???'); add {' '.join(f'{key}=...' for key in missing)} to the command line"
        )
