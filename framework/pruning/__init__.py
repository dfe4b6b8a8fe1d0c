"""Pruning engine: structures, criteria, parameter selection, schedules, pruners and masks.

Plain PyTorch (no Hydra, no MLflow). Library entry point: :func:`build_pruner`.

Modules, one job each:

* :mod:`.names`      - the method, structure and criterion names (no torch: config checks use them).
* :mod:`.structures` - how a weight is cut into filters / channels / elements.
* :mod:`.criteria`   - scores per group (l1, l2, random, or your own :class:`Criterion`).
* :mod:`.selection`  - which parameters are pruned, per-layer levels.
* :mod:`.schedules`  - which epochs prune, to which target (constant, AGP).
* :mod:`.pruners`    - score + target -> keep-mask (level/agp, magnitude, sensitivity).
* :mod:`.masks`      - the mask store that ANDs, applies and saves masks.
* :mod:`.engine`     - the facade a training loop talks to.
* :mod:`.bn_fold`    - BatchNorm-folded ranking view (imported only when requested).
* :mod:`.dependency` - coupled channels across layers, read from the torch.fx graph.
* :mod:`.coupled`    - ranking and masking whole dependency groups (filter/channel default).
* :mod:`.thinning`   - masked model -> smaller dense model, its recipe, optimizer state, file.

Names are imported on first use (PEP 562), so ``import framework.pruning.names`` does not pay
for torch.
"""

from __future__ import annotations

import importlib

from framework.pruning.names import CRITERIA, METHODS, STRUCTURES

_EXPORTS = {
    "AGPSchedule": "schedules",
    "ConstantSchedule": "schedules",
    "EpochSchedule": "schedules",
    "Criterion": "criteria",
    "L1Criterion": "criteria",
    "L2Criterion": "criteria",
    "RandomCriterion": "criteria",
    "build_criterion": "criteria",
    "MaskStore": "masks",
    "NoOpPruner": "engine",
    "PruningEngine": "engine",
    "build_pruner": "engine",
    "raw_weight": "engine",
    "build_mask_pruner": "pruners",
    "resolve_levels": "selection",
    "select_parameters": "selection",
    "expand_group_mask": "structures",
    "group_count": "structures",
    "to_groups": "structures",
    "ThinResult": "thinning",
    "apply_recipe": "thinning",
    "load_thinned": "thinning",
    "save_thinned": "thinning",
    "thin": "thinning",
    "build_dependency_graph": "dependency",
}

__all__ = ["CRITERIA", "METHODS", "STRUCTURES", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'framework.pruning' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"framework.pruning.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
