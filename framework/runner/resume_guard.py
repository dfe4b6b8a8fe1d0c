"""Resuming: which checkpoint ``resume`` names, and resuming it with the config it was trained
with, or saying exactly what changed.

``resume=auto`` finds this run dir's checkpoint, else the newest one of an earlier run started with
the same overrides (:func:`find_resumable_checkpoint`). The checkpoint records the run's resolved config (the flattened params, plus where its MLflow run
lives) through :class:`ConfigRecordHook`. On resume, :func:`config_changes` compares it with the
new config: by default a change is refused with one line naming every key that differs
(``epochs: 3 -> 6``); ``resume_changed=allow`` continues with the new values, which the runner
applies (new epochs and schedule; the lr scheduler's arguments are set on the restored scheduler)
and tags in MLflow. Some changes cannot be continued even then: another model (the weights do not
fit) or another tracking store (the MLflow run lives in the old one).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework.errors import ConfigError
from framework.run_context import RunContext
from framework.training.hooks import Hook

log = logging.getLogger(__name__)

# Prefixes of keys whose change no resume can absorb, with the reason shown to the user.
NEVER_CONTINUED = {
    "model.": "the checkpoint's weights belong to the old model; start a new run with pretrained=<checkpoint>",
    "tracking.uri": "the run's MLflow run lives in the old store; resume with the old tracking.uri",
}


class ConfigRecordHook(Hook):
    """Keeps the run's flattened config in every checkpoint (``hooks.config.params``)."""

    name = "config"

    def __init__(self, params: Mapping[str, str]):
        self.params = dict(params)

    def state_dict(self) -> dict[str, Any]:
        return {"params": dict(self.params)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass  # compared before the run is built (config_changes); the new config stands


def config_changes(checkpoint: Mapping, params: Mapping[str, str], allow: bool) -> list[str]:
    """``["epochs: 3 -> 6", ...]`` between the checkpoint's config and ``params``; a ConfigError
    (one line) when there are changes and ``allow`` is off, or a change that cannot be continued."""
    saved = checkpoint.get("hooks", {}).get("config", {}).get("params")
    if saved is None:  # a checkpoint from before configs were recorded: nothing to compare
        return []
    keys = sorted(set(saved) | set(params))
    missing = "(unset)"
    changes = [
        f"{k}: {saved.get(k, missing)} -> {params.get(k, missing)}" for k in keys if saved.get(k) != params.get(k)
    ]
    if not changes:
        return []
    for prefix, reason in NEVER_CONTINUED.items():
        blocked = [c for c in changes if c.startswith(prefix)]
        if blocked:
            raise ConfigError(f"resume: cannot continue after a change of {'; '.join(blocked)}: {reason}")
    if not allow:
        raise ConfigError(
            f"resume: the checkpoint was trained with another config ({'; '.join(changes)}); "
            "resume with the same settings, or add resume_changed=allow to continue with the new values"
        )
    return changes


def apply_scheduler_arguments(lr_scheduler: Any, arguments: Mapping[str, Any]) -> None:
    """Set the config's arguments (``T_max``, ``gamma``, ``milestones`` ...) on a scheduler whose
    state was restored from a checkpoint, so a changed value takes effect from the next step."""
    if lr_scheduler is None:
        return
    for key, value in arguments.items():
        if not key.startswith("_") and hasattr(lr_scheduler, key):
            current = getattr(lr_scheduler, key)
            # MultiStepLR keeps its milestones as a Counter
            setattr(lr_scheduler, key, type(current)(value) if type(current).__name__ == "Counter" else value)


def checkpoint_to_resume(cfg: DictConfig, context: RunContext) -> Path | None:
    """The checkpoint ``resume`` asks for, or None to start from scratch."""
    if cfg.resume is None:
        return None
    if cfg.resume != "auto":
        return Path(cfg.resume)
    path = find_resumable_checkpoint(context, Path(cfg.paths.output_dir))
    if path is None:
        log.info("resume=auto: no earlier checkpoint of this run found; starting from scratch")
    return path


def find_resumable_checkpoint(context: RunContext, outputs: Path) -> Path | None:
    """This run dir's checkpoint, else the newest one of an earlier run with the same overrides.

    With an explicit ``hydra.run.dir`` the first case applies; with Hydra's timestamped dirs the
    second finds the run that the same command started before.
    """
    own = context.last_checkpoint
    if own.is_file():
        return own
    wanted = _without_resume(context.overrides)
    candidates = []
    for overrides_file in outputs.glob("**/.hydra/overrides.yaml"):
        run_dir = overrides_file.parent.parent
        checkpoint = RunContext(run_dir).last_checkpoint
        if run_dir == context.run_dir or not checkpoint.is_file():
            continue
        if _without_resume(OmegaConf.load(overrides_file)) == wanted:
            candidates.append(checkpoint)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def _without_resume(overrides) -> list[str]:
    return sorted(str(o) for o in overrides if not str(o).startswith(("resume=", "hydra.")))


def refuse_pruner_change_after_thinning(thinned: bool, changes: list[str], pruned: bool) -> None:
    """A thinned checkpoint's masks are spent (the model is physically smaller): a new pruner, a new
    target or ``pruner=none`` cannot apply to it, so resuming it with one is refused in one line
    rather than crashing or logging a target the masks never reach."""
    if not thinned:
        return
    changed = [change for change in changes if change.startswith("pruner.")]
    if changed or not pruned:
        # the keys a user sets first: the method and the target, then whatever followed from them
        changed.sort(key=lambda c: not c.startswith(("pruner.method:", "pruner.final_sparsity:", "pruner.structure:")))
        what = "; ".join(changed[:3]) + (f" (+{len(changed) - 3} more)" if len(changed) > 3 else "")
        what = what or "pruner.method: -> none"
        raise ConfigError(
            f"resume: the checkpoint holds a thinned model, whose pruner settings cannot change ({what[:400]}); "
            "resume it with the pruner it was trained with, or prune it further in a new run with "
            "pretrained=<checkpoint>"
        )
