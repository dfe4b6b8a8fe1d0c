"""fold_batchnorm that changes nothing says so: pruning while every folded BatchNorm is untrained."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from framework.pruning.scores.bn_fold import batchnorms_at_initial_state, find_fold_pairs

WARNING = "fold_batchnorm: every folded BatchNorm is still at its initial state"
FAST = ["tracking=none", "loader.limit_train_batches=2", "loader.limit_val_batches=1", "progress=false"]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(WARNING)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "warned"),
    [
        (["fold_batchnorm=true", "epochs=2"], 1),  # prunes at epoch 0 only: untrained BatchNorms
        # AGP's step at epoch 0 removes nothing (its target starts at 0); by its next step the
        # BatchNorms have trained: nothing to say (it used to warn at epoch 0)
        (["fold_batchnorm=true", "epochs=4", "schedule.ending_epoch=3"], 0),
        (["fold_batchnorm=true", "epochs=3", "schedule.starting_epoch=1", "schedule.ending_epoch=3"], 0),
        (["fold_batchnorm=false", "epochs=2"], 0),
    ],
)
def test_pruning_on_untrained_batchnorms_warns_once(run_experiment, caplog, overrides, warned):
    caplog.set_level(logging.WARNING, logger="framework.runner.pruning_hook")
    run_experiment(["pruner=agp", *FAST, *overrides])
    found = _warnings(caplog)
    assert len(found) == warned, found
    if warned:
        assert "when pruning at epoch 0" in found[0] and "schedule.starting_epoch=1" in found[0]


def test_initial_state_means_every_folded_batchnorm_as_constructed():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, bias=False), nn.BatchNorm2d(4)
    )
    pairs = find_fold_pairs(model)
    assert len(pairs) == 2 and batchnorms_at_initial_state(model, pairs)
    for change in (
        lambda bn: bn.weight.data.fill_(0.5),
        lambda bn: bn.bias.data.fill_(0.1),
        lambda bn: bn.running_mean.fill_(0.2),
        lambda bn: bn.running_var.fill_(2.0),
    ):
        bn = model[4]  # one of the two is enough to make folding matter
        saved = {k: v.clone() for k, v in bn.state_dict().items()}
        with torch.no_grad():
            change(bn)
        assert not batchnorms_at_initial_state(model, pairs)
        bn.load_state_dict(saved)
    assert batchnorms_at_initial_state(model, pairs)
    assert not batchnorms_at_initial_state(model, [])  # nothing folded: nothing to say
