"""Pruning engine: structures, criteria, parameter selection, schedules, mask rules and masks.

Plain PyTorch (no Hydra, no MLflow). Library entry point: :func:`build_pruner`; "the pruner" is
the engine it returns.

Modules, one job each:

* :mod:`.spec`       - method/structure/criterion names and every rule about the pruner's arguments
  (no torch: the config check uses them).
* :mod:`.build`      - ``build_pruner``: arguments checked by the spec -> a ready engine.
* :mod:`.structures` - how a weight is cut into filters / channels / elements.
* :mod:`.criteria`   - scores per group (l1, l2, random, or your own :class:`Criterion`).
* :mod:`.selection`  - which parameters are pruned, per-layer levels.
* :mod:`.schedules`  - which epochs prune, to which target (constant, AGP).
* :mod:`.rules`      - per-layer mask rules: score + target -> keep-mask (level/agp, magnitude,
  std_threshold).
* :mod:`.masks`      - the mask store that ANDs, applies and saves masks.
* :mod:`.engine`     - the pruner a training loop talks to.
* :mod:`.fx`         - torch.fx tracing, layer-type tuples, DataParallel/compile wrapper prefixes.
* :mod:`.bn_fold`    - BatchNorm-folded ranking view.
* :mod:`.dependency` - coupled channels across layers, read from the torch.fx graph.
* :mod:`.coupled`    - ranking and masking whole dependency groups (filter/channel default).
* :mod:`.thinning`   - masked model -> smaller dense model, its recipe, optimizer state, file.
* :mod:`.global_scope` - ``scope="global"``: one normalised ranking across layers, with floors.
* :mod:`.bn_activation` - ``fold_batchnorm="activation"``: rank by the change after BN + ReLU.

Names are imported on first use (PEP 562), so ``import framework.pruning.spec`` does not pay
for torch.
"""

from __future__ import annotations

import importlib

from framework.pruning.spec import CRITERIA, METHODS, STRUCTURES

_EXPORTS = {
    "AGPSchedule": "schedules",
    "ConstantSchedule": "schedules",
    "EpochSchedule": "schedules",
    "Criterion": "scores.criteria",
    "L1Criterion": "scores.criteria",
    "L2Criterion": "scores.criteria",
    "RandomCriterion": "scores.criteria",
    "build_criterion": "scores.criteria",
    "MaskStore": "masks",
    "NoOpPruner": "engine",
    "PruningEngine": "engine",
    "build_pruner": "build",
    "raw_weight": "engine",
    "build_mask_rule": "rules",
    "resolve_levels": "selection",
    "select_parameters": "selection",
    "expand_group_mask": "structures",
    "group_count": "structures",
    "to_groups": "structures",
    "ThinResult": "thin.thinning",
    "apply_recipe": "thin.thinning",
    "load_thinned": "thin.thinning",
    "save_thinned": "thin.thinning",
    "thin": "thin.thinning",
    "build_dependency_graph": "graph.dependency",
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
