"""Pruning engine: structures, criteria, parameter selection, schedules, mask rules and masks.

Plain PyTorch (no Hydra, no MLflow). Library entry point: :func:`build_pruner`, which takes a
:class:`PrunerSpec` (or its fields as keywords) and returns a pruner: an engine, or a
:class:`NoOpPruner` for ``method="none"``; both satisfy the :class:`Pruner` protocol.

At the root, one job each:

* :mod:`.spec`       - the settings (:class:`PrunerSpec`) and every rule about them (no torch: the
  config check uses them).
* :mod:`.build`      - ``build_pruner``: a spec checked by its rules -> a ready engine.
* :mod:`.protocol`   - :class:`Pruner`: what a loop, a hook or an analysis may ask of a pruner.
* :mod:`.engine`     - the pruner a training loop talks to (and the no-op one).
* :mod:`.coupled`    - ranking and masking whole dependency groups (filter/channel/head).
* :mod:`.global_scope` - ``scope="global"``: one normalised ranking across layers, with floors.
* :mod:`.structures` - how a weight is cut into filters / channels / elements.
* :mod:`.selection`  - which parameters are pruned, per-layer levels.
* :mod:`.schedules`  - which epochs prune, to which target (constant, AGP).
* :mod:`.rules`      - per-layer mask rules: score + target -> keep-mask (level/agp, magnitude,
  std_threshold); :mod:`.nm` the N:M rule.
* :mod:`.masks`      - the mask store that ANDs, applies and saves masks.
* :mod:`.regularizers` - bn_l1, group_lasso: sparsity penalties bound to the pruner's selection.

And three rooms: :mod:`.graph` (tracing, dependency groups, op tables, layouts), :mod:`.scores`
(criteria, data criteria and their calibration, BatchNorm-folded and BN-aware views, score
checks) and :mod:`.thinning` (masked model -> smaller model, recipe, attention, recipe checks;
not ``thin``: that name is the function :func:`thin`).

Names are imported on first use (PEP 562), so ``import framework.pruning.spec`` does not pay
for torch.
"""

from __future__ import annotations

import importlib

from framework.pruning.spec import CRITERIA, METHODS, STRUCTURES, PrunerSpec

_EXPORTS = {
    "AGPSchedule": "schedules",
    "ConstantSchedule": "schedules",
    "EpochSchedule": "schedules",
    "Pruner": "protocol",
    "Criterion": "scores.criteria",
    "L1Criterion": "scores.criteria",
    "L2Criterion": "scores.criteria",
    "RandomCriterion": "scores.criteria",
    "build_criterion": "scores.criteria",
    "DataCriterion": "scores.data_criteria",
    "TaylorCriterion": "scores.data_criteria",
    "ActivationMeanCriterion": "scores.data_criteria",
    "APoZCriterion": "scores.data_criteria",
    "BNGammaCriterion": "scores.data_criteria",
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
    "ThinResult": "thinning.thin",
    "apply_recipe": "thinning.thin",
    "load_thinned": "thinning.thin",
    "save_thinned": "thinning.thin",
    "thin": "thinning.thin",
    "build_dependency_graph": "graph.dependency",
}

__all__ = ["CRITERIA", "METHODS", "STRUCTURES", "PrunerSpec", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'framework.pruning' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"framework.pruning.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
