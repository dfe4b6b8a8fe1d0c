"""fold_batchnorm through the runner: reporting, and the ranking of a pretrained one-shot prune."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from mlflow.tracking import MlflowClient
from support import store_overrides

from framework.models import SimpleCNN

CONVS = ["block1.0", "block2.0", "block3.0"]


def pretrained_file_with_skewed_batchnorm(path):
    """simple_cnn weights whose BN scales differ wildly per channel, so folded and raw rankings differ."""
    torch.manual_seed(1)
    model = SimpleCNN(num_classes=10, in_channels=1)
    with torch.no_grad():
        for conv in CONVS:
            bn = model.get_submodule(conv.replace(".0", ".1"))
            bn.weight.copy_(torch.empty_like(bn.weight).uniform_(-2, 2))
            bn.running_var.copy_(torch.empty_like(bn.running_var).uniform_(0.01, 9.0))
            bn.running_mean.normal_()
            bn.bias.normal_()
    torch.save(model.state_dict(), path)
    return model.state_dict()


def lowest_filters(weight, k):
    scores = weight.abs().flatten(1).mean(dim=1)  # l1, normalised by the filter size
    return set(torch.argsort(scores, stable=True)[:k].tolist())


@pytest.mark.slow
@pytest.mark.parametrize("fold", [True, False])
def test_one_shot_filter_prune_of_a_pretrained_model_ranks_on_folded_weights(run_experiment, tmp_path, fold):
    state = pretrained_file_with_skewed_batchnorm(tmp_path / "pretrained.pt")
    _, context, _ = run_experiment(
        [
            "tracking=none",
            f"pretrained={tmp_path / 'pretrained.pt'}",
            "pruner=level",
            # coupled (the default): each conv's filters form their own groups with its BN and readers;
            # masks are checked, so the model is not thinned
            "pruner.structure=filter",
            "pruner.final_sparsity=0.5",
            "pruner.thin=never",
            "schedule=one_shot",
            "epochs=1",
            f"fold_batchnorm={str(fold).lower()}",
        ]
    )
    masks = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)["hooks"]["pruning"]["masks"]
    differs = False
    for conv in CONVS:
        weight = state[f"{conv}.weight"]
        bn = conv.replace(".0", ".1")
        scale = state[f"{bn}.weight"] / torch.sqrt(state[f"{bn}.running_var"] + 1e-5)
        folded = weight * scale.view(-1, 1, 1, 1)
        k = weight.shape[0] // 2
        pruned = set(torch.nonzero(~masks[f"{conv}.weight"].flatten(1).any(dim=1)).flatten().tolist())
        expected = lowest_filters(folded if fold else weight, k)
        assert pruned == expected, conv
        differs |= lowest_filters(folded, k) != lowest_filters(weight, k)
    assert differs  # the BN statistics were skewed enough for the choice to matter


@pytest.mark.slow
def test_folded_agp_run_records_the_pairs(run_experiment, tracking_overrides, shared_store):
    _, context, _ = run_experiment(
        [
            *tracking_overrides,
            "pruner=agp",
            "fold_batchnorm=true",
            "epochs=2",
            "schedule.ending_epoch=2",
            "tracking.log_model=false",
        ]
    )
    pairs = json.loads((context.run_dir / "pruning" / "bn_fold_pairs.json").read_text())
    assert [(p["layer_name"], p["bn_name"]) for p in pairs] == [
        ("block1.0", "block1.1"),
        ("block2.0", "block2.1"),
        ("block3.0", "block3.1"),
    ]
    client = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1])
    run_id = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)["hooks"]["trackers"]["mlflow"][
        "run_id"
    ]
    run = client.get_run(run_id)
    assert run.data.tags["fold_batchnorm.folded_layers"] == "3"
    assert run.data.params["fold_batchnorm"] == "True"
    assert "pruning/bn_fold_pairs.json" in {a.path for a in client.list_artifacts(run_id, "pruning")}


def test_fold_without_any_pair_warns(run_experiment, caplog):
    # squeezenet has no BatchNorm at all
    with caplog.at_level(logging.WARNING):
        run_experiment(
            [
                "tracking=none",
                "model=torchvision",
                "model.name=squeezenet1_1",
                "dataset=synthetic",
                "dataset.shape=[3,32,32]",
                "dataset.train_size=32",
                "dataset.val_size=16",
                "pruner=agp",
                "schedule=one_shot",
                "epochs=1",
                "fold_batchnorm=true",
            ]
        )
    assert any("nothing is folded" in r.getMessage() for r in caplog.records)
