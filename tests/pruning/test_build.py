"""build_pruner: every argument checked before anything is built, the engine class from the table."""

import pytest
import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning import build_pruner
from framework.pruning.build import COUPLED_ENGINES, ENGINES
from framework.pruning.coupled import CoupledPruningEngine
from framework.pruning.engine import PruningEngine
from framework.pruning.global_scope import GlobalCoupledPruningEngine, GlobalPruningEngine


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


@pytest.mark.parametrize(
    "arguments, engine",
    [
        (dict(structure="fine"), PruningEngine),
        (dict(structure="filter", coupling="layer"), PruningEngine),
        (dict(structure="fine", scope="global"), GlobalPruningEngine),
        (dict(structure="filter"), CoupledPruningEngine),
        (dict(structure="channel", scope="global"), GlobalCoupledPruningEngine),
        (dict(method="magnitude", threshold=0.1), PruningEngine),
    ],
)
def test_the_engine_class_comes_from_the_table(arguments, engine):
    pruner = build_pruner(tiny_model(), **{"method": "agp", "ending_epoch": 2, "input_shape": (3, 6, 6), **arguments})
    assert type(pruner) is engine
    table = COUPLED_ENGINES if pruner.coupling == "coupled" else ENGINES
    assert table[pruner.scope] is engine


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            dict(method="prune"),
            "pruner.method='prune' is invalid; allowed: none | level | agp | magnitude | std_threshold",
        ),
        (
            dict(method="sensitivity"),
            "pruner.method=sensitivity was renamed; use pruner=std_threshold (pruner.method=std_threshold, pruner.std_multiplier=...)",
        ),
        (dict(structure="kernel"), "pruner.structure='kernel' is invalid; allowed: fine | filter | channel"),
        (
            dict(criterion="kernel"),
            "pruner.criterion='kernel' is invalid; allowed: l1 | l2 | random | taylor | activation_mean | apoz | bn_gamma",
        ),
        (dict(final_sparsity=1.2), "pruner.final_sparsity=1.2 is outside [0, 1)"),
        (
            dict(initial_sparsity=0.6, final_sparsity=0.5),
            "pruner.initial_sparsity=0.6 is above pruner.final_sparsity=0.5",
        ),
        (dict(ending_epoch=0, starting_epoch=0), "schedule.ending_epoch=0 is not after schedule.starting_epoch=0"),
        (dict(frequency=0), "schedule.frequency=0 is invalid; allowed: an integer >= 1"),
        (
            dict(weights=["0.wieght"]),
            "pruner.weights pattern '0.wieght' matches none of the model parameters; closest names: 0.weight",
        ),
        (dict(exclude=["7.*"]), "pruner.exclude pattern '7.*' matches none"),
        (dict(levels={"9.*": 0.3}), "pruner.levels pattern '9.*' matches none of the pruned parameters"),
        (
            dict(levels={"0.*": 0.1}, initial_sparsity=0.2),
            "pruner.levels gives 0.weight a final sparsity 0.1 below pruner.initial_sparsity=0.2",
        ),
        (dict(structure="filter", weights=["1.weight"]), "pruner.structure=filter cannot prune 1.weight"),
        (
            dict(method="magnitude", structure="filter", threshold=0.1),
            "pruner.structure=filter does not apply to pruner.method=magnitude",
        ),
        (dict(method="magnitude"), "pruner.threshold=None is invalid; allowed: a number >= 0"),
        (
            dict(method="std_threshold", std_multiplier=0.5, levels={"0.*": 0.5}),
            "pruner.levels is not supported by pruner.method=std_threshold",
        ),
    ],
)
def test_build_pruner_validation_messages(kwargs, message):
    arguments = dict(method="agp", final_sparsity=0.5, ending_epoch=5) | kwargs
    with pytest.raises(PruningError) as error:
        build_pruner(tiny_model(), **arguments)
    assert message in str(error.value), str(error.value)
    assert "\n" not in str(error.value)
