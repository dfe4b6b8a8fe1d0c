"""The Pruner protocol: every pruner build_pruner returns answers each member directly, and an
engine gets everything it needs in its constructor (nothing is set on it afterwards)."""

import pytest
import torch
from torch import nn

from framework.pruning import NoOpPruner, Pruner, PrunerSpec, build_pruner
from framework.pruning.scores.calibration import Calibration


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


SETTINGS = dict(method="agp", ending_epoch=2, input_shape=(3, 6, 6))


@pytest.mark.parametrize(
    "fields, thin_when, nm",
    [
        (dict(method="none"), "never", None),
        (dict(structure="fine"), "never", None),
        (dict(structure="filter", coupling="layer", scope="global"), "never", None),
        (dict(structure="filter"), "end", None),
        (dict(structure="channel", scope="global", thin="after_pruning"), "after_pruning", None),
        (dict(method="magnitude", threshold=0.1), "never", None),
        (dict(structure="nm", n=2, m=4, final_sparsity=0.5, weights=["3.weight"]), "never", (2, 4)),
    ],
)
def test_every_pruner_answers_the_protocol_from_its_spec(fields, thin_when, nm):
    pruner = build_pruner(tiny_model(), **{**SETTINGS, **fields})
    assert isinstance(pruner, Pruner)
    assert (pruner.thin_when, pruner.nm, pruner.calibration, pruner.fold_pairs) == (thin_when, nm, None, [])
    ranked = pruner.ranked_layers()
    assert set(ranked) <= set(pruner.parameter_names) and bool(ranked) == (pruner.method != "none")
    assert pruner.sparsity()["total"] == 0.0
    if not isinstance(pruner, NoOpPruner):
        assert pruner.spec == PrunerSpec.of(**{**SETTINGS, **fields})


def test_a_data_aware_criterion_is_calibrated_on_the_layers_the_coupled_engine_ranks():
    pruner = build_pruner(tiny_model(), **SETTINGS, structure="filter", criterion="taylor", calibration_batches=2)
    assert isinstance(pruner.calibration, Calibration)
    assert pruner.ranking_view == pruner.calibration.view  # the criterion ranks its own view
    # filter ranks the producers of each coupled channel: the two convs (the classifier's outputs are fixed)
    assert sorted(pruner.ranked_layers()) == ["0.weight", "3.weight"]
    assert pruner.calibration.layers == pruner.ranked_layers()
    assert pruner.units() == {"0": ("0.weight",), "3": ("3.weight",)}


def test_fold_pairs_are_the_pairs_the_folded_view_folds():
    pruner = build_pruner(tiny_model(), **SETTINGS, structure="filter", fold_batchnorm=True)
    assert [(p.weight_name, p.bn_name) for p in pruner.fold_pairs] == [("0.weight", "1")]


def test_the_public_names_stay_the_objects_once_every_room_is_imported():
    # importing a subpackage binds its name on framework.pruning: no room may share a public name
    # (the thinning room is not called `thin`, which is the function)
    import importlib
    import pkgutil
    import types

    import framework.pruning as pruning

    for module in pkgutil.walk_packages(pruning.__path__, "framework.pruning."):
        importlib.import_module(module.name)
    modules = [name for name in pruning.__all__ if isinstance(getattr(pruning, name), types.ModuleType)]
    assert modules == []
