"""Pruning engine: structures, criteria, parameter selection, schedules, pruners and masks.

Plain PyTorch (no Hydra, no MLflow). Library entry point: :func:`build_pruner`.

Modules, one job each:

* :mod:`.structures` - how a weight is cut into filters / channels / elements.
* :mod:`.criteria`   - scores per group (l1, l2, random).
* :mod:`.selection`  - which parameters are pruned, per-layer levels.
* :mod:`.schedules`  - which epochs prune, to which target (constant, AGP).
* :mod:`.pruners`    - score + target -> keep-mask (level/agp, magnitude, sensitivity).
* :mod:`.masks`      - the mask store that ANDs, applies and saves masks.
* :mod:`.engine`     - the facade a training loop talks to.
* :mod:`.bn_fold`    - BatchNorm-folded ranking view (imported only when requested).
* :mod:`.dependency` - coupled channels across layers, read from the torch.fx graph.
* :mod:`.coupled`    - ranking and masking whole dependency groups (filter/channel default).
* :mod:`.thinning`   - masked model -> smaller dense model, its recipe, optimizer state, file.
"""

from framework.pruning.criteria import CRITERIA, build_criterion
from framework.pruning.engine import METHODS, NoOpPruner, PruningEngine, build_pruner, raw_weight
from framework.pruning.masks import MaskStore
from framework.pruning.pruners import build_mask_pruner
from framework.pruning.schedules import AGPSchedule, ConstantSchedule, EpochSchedule
from framework.pruning.selection import resolve_levels, select_parameters
from framework.pruning.structures import STRUCTURES, expand_group_mask, group_count, to_groups
from framework.pruning.thinning import ThinResult, apply_recipe, load_thinned, save_thinned, thin

__all__ = [
    "AGPSchedule",
    "CRITERIA",
    "ConstantSchedule",
    "EpochSchedule",
    "METHODS",
    "MaskStore",
    "NoOpPruner",
    "PruningEngine",
    "STRUCTURES",
    "ThinResult",
    "apply_recipe",
    "build_criterion",
    "build_mask_pruner",
    "build_pruner",
    "expand_group_mask",
    "group_count",
    "load_thinned",
    "raw_weight",
    "resolve_levels",
    "save_thinned",
    "select_parameters",
    "thin",
    "to_groups",
]
