"""Runs that start from a library's weights (placed in the cache by the test, offline): they train,
prune, thin and deploy, and the pretrained one starts at the accuracy of its weights."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from hub_cache import place_timm_weights, place_torchvision_weights

from framework.data import Synthetic, build_loaders
from framework.models import torchvision_model
from framework.training.rng import seed_everything

SYNTHETIC = [
    "dataset=synthetic",
    "dataset.shape=[3,32,32]",
    "dataset.num_classes=4",
    "dataset.train_size=32",
    "dataset.val_size=32",
    "loader.batch_size=16",
    "tracking=none",
]


@pytest.fixture
def offline_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def epochs_of(run_dir) -> dict[int, dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {record["epoch"]: record for record in records}


@torch.no_grad()
def accuracy_and_loss(model: torch.nn.Module, seed: int) -> tuple[float, float]:
    """What the weights score on the run's validation split, computed here, apart from the run."""
    bundle = Synthetic((3, 32, 32), 4, train_size=32, val_size=32, seed=seed).load()
    _, val = build_loaders(bundle, batch_size=16)
    model.eval()
    correct, loss, count = 0, 0.0, 0
    for inputs, targets in val:
        logits = model(inputs)
        correct += int((logits.argmax(1) == targets).sum())
        loss += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
        count += len(targets)
    return correct / count, loss / count


@pytest.mark.slow
def test_torchvision_weights_run_starts_at_their_accuracy_then_prunes_thins_and_deploys(run_experiment, offline_caches):
    # squeezenet: no BatchNorm, so an epoch at a negligible learning rate leaves the network as it
    # was loaded, and its classifier is a Conv2d (replaced for the dataset's 4 classes)
    weights = torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1
    torch.manual_seed(3)
    place_torchvision_weights(offline_caches / "torch", weights, torchvision.models.squeezenet1_1().state_dict())
    seed_everything(0)  # as the run does before it builds the model: the same new classifier
    expected_top1, expected_loss = accuracy_and_loss(
        torchvision_model("squeezenet1_1", num_classes=4, weights="IMAGENET1K_V1"), seed=0
    )

    cfg, context, final = run_experiment(
        [
            *SYNTHETIC,
            "model=torchvision",
            "model.name=squeezenet1_1",
            "model.weights=IMAGENET1K_V1",
            "pruner=agp_filter",
            "epochs=3",
            "schedule.starting_epoch=1",  # epoch 0 is dense: its evaluation is the weights' own
            "schedule.ending_epoch=2",
            "optimizer.lr=1e-9",
            "optimizer.weight_decay=0",
        ]
    )
    first = epochs_of(context.run_dir)[0]
    assert first["val/top1"] == pytest.approx(expected_top1, abs=1 / 32 + 1e-9)
    assert first["val/loss"] == pytest.approx(expected_loss, rel=1e-4)
    assert final["pruning/target_sparsity"] == pytest.approx(0.5)
    assert final["thin/params/thinned"] < final["thin/params/dense"]
    assert abs(final["thin/val_top1"] - final["val/top1"]) <= 1 / 32 + 1e-9  # thinned = masked
    assert (context.run_dir / "deploy").is_dir() and any((context.run_dir / "deploy").iterdir())


@pytest.mark.slow
def test_timm_convnet_with_pretrained_weights_prunes_thins_exactly_and_deploys(run_experiment, offline_caches):
    import timm

    name = "mobilenetv3_small_050"  # BatchNormAct2d: its channels may stay whole until the graph knows it
    torch.manual_seed(4)
    place_timm_weights(offline_caches / "hf", name, timm.create_model(name).state_dict())
    _, context, final = run_experiment(
        [*SYNTHETIC, "model=timm", f"model.name={name}", "model.pretrained=true", "pruner=agp_filter", "epochs=2"]
        + ["optimizer.lr=0.01"]
    )
    assert final["thin/params/thinned"] <= final["thin/params/dense"]
    assert abs(final["thin/val_top1"] - final["val/top1"]) <= 1 / 32 + 1e-9  # thinned = masked
    assert (context.run_dir / "deploy").is_dir() and any((context.run_dir / "deploy").iterdir())
