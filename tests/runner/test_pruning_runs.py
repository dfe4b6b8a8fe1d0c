"""Pruning runs end to end: the structures really zeroed, the logged targets equal the AGP formula."""

from __future__ import annotations

import math

import pytest
import torch
from mlflow.tracking import MlflowClient
from support import store_overrides

from framework.models import SimpleCNN
from framework.pruning.structures import to_groups

EPOCHS, START, END, FREQ = 5, 0, 4, 1


def agp_formula(epoch, s_i, s_f, start=START, end=END, freq=FREQ):
    """The issue's formula, written out independently of the engine."""
    scheduled = list(range(start, end, freq))
    span = ((end - start - 1) // freq) * freq
    last = max(e for e in scheduled if e <= epoch) if epoch >= start else None
    if last is None:
        return 0.0
    if span == 0:
        return s_f
    return s_f + (s_i - s_f) * (1 - (last - start) / span) ** 3


def layer_for(name):
    model = SimpleCNN(num_classes=10, in_channels=1)
    return model.get_submodule(name.rsplit(".", 1)[0])


def zero_group_count(weight, structure, layer):
    return int((~to_groups(weight, structure, layer).ne(0).any(dim=1)).sum())


# simple_cnn's coupled channel groups: (producer conv, its BatchNorm, the layer that reads them)
GROUPS = [
    ("block1.0", "block1.1", "block2.0"),
    ("block2.0", "block2.1", "block3.0"),
    ("block3.0", "block3.1", "classifier"),
]


def removed_channels(weights, producer):
    return set(torch.nonzero(~weights[f"{producer}.weight"].flatten(1).ne(0).any(dim=1)).flatten().tolist())


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset, structure, final", [("agp", "fine", 0.7), ("agp_filter", "filter", 0.5), ("agp_channel", "channel", 0.5)]
)
def test_agp_presets_zero_exactly_the_requested_structures(
    run_experiment, tracking_overrides, shared_store, preset, structure, final
):
    # masks are what is checked here, so the model is not thinned at the end
    overrides = [
        *tracking_overrides,
        f"pruner={preset}",
        f"epochs={EPOCHS}",
        f"schedule.ending_epoch={END}",
        "tracking.log_model=false",
        "pruner.thin=never",
    ]
    cfg, context, result = run_experiment(overrides)
    checkpoint = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)
    weights = checkpoint["model"]
    masks = checkpoint["hooks"]["pruning"]["masks"]

    if structure == "fine":
        pruned_layers = ["block1.0.weight", "block2.0.weight", "block3.0.weight", "classifier.weight"]
        assert sorted(masks) == sorted(pruned_layers)
        for name in pruned_layers:
            weight = weights[name]
            assert int((weight == 0).sum()) == math.floor(final * weight.numel() + 0.5), name
    else:
        # Coupled: each group loses round(t * n) channels, removed from the producer's filters, its
        # BatchNorm's gamma and beta and the reader's input columns alike; the classes stay.
        for producer, norm, reader in GROUPS:
            removed = removed_channels(weights, producer)
            channels = weights[f"{producer}.weight"].shape[0]
            assert len(removed) == math.floor(final * channels + 0.5), producer
            kept = sorted(set(range(channels)) - removed)
            index = sorted(removed)
            assert torch.count_nonzero(weights[f"{norm}.weight"][index]) == 0
            assert torch.count_nonzero(weights[f"{norm}.bias"][index]) == 0
            assert torch.count_nonzero(weights[f"{reader}.weight"][:, index]) == 0
            assert bool(weights[f"{producer}.weight"][kept].flatten(1).ne(0).any(dim=1).all())
            assert bool(
                weights[f"{reader}.weight"][:, kept].flatten(1).ne(0).any(dim=0).all()
                if reader == "classifier"
                else weights[f"{reader}.weight"][:, kept].transpose(0, 1).flatten(1).ne(0).any(dim=1).all()
            )
        assert bool(weights["classifier.weight"].ne(0).any(dim=1).all())  # no class removed
        assert {f"{norm}.{p}" for _, norm, _ in GROUPS for p in ("weight", "bias")} <= set(masks)

    # logged target = the formula at every epoch; sparsity/total follows it
    client = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1])
    run_id = checkpoint["hooks"]["trackers"]["mlflow"]["run_id"]
    targets = {m.step: m.value for m in client.get_metric_history(run_id, "pruning/target_sparsity")}
    totals = {m.step: m.value for m in client.get_metric_history(run_id, "sparsity/total")}
    assert sorted(targets) == list(range(EPOCHS))
    for epoch in range(EPOCHS):
        assert targets[epoch] == pytest.approx(agp_formula(epoch, 0.0, final), abs=1e-12), epoch
        if structure == "fine":  # within rounding of one element per layer
            assert totals[epoch] == pytest.approx(targets[epoch], abs=0.02), epoch
    if structure == "fine":
        assert totals[EPOCHS - 1] == pytest.approx(final, abs=0.02)
    else:  # a removed channel takes its producer's filter and its reader's column: more weights than t
        assert totals[EPOCHS - 1] > final
    assert [totals[e] for e in range(EPOCHS)] == sorted(totals.values())  # never decreases

    artifacts = {a.path for a in client.list_artifacts(run_id, "pruning")}
    assert {"pruning/sparsity.csv", "pruning/sparsity.md", "pruning/sparsity.png", "pruning/macs.md"} <= artifacts
    assert result["val/top1"] > 0.8


def test_frequency_two_target_formula_is_logged(run_experiment, tmp_path):
    from framework.tracking.metrics_file import read_metrics

    _, context, _ = run_experiment(
        [
            "tracking=none",
            "pruner=agp",
            "epochs=6",
            "schedule.starting_epoch=1",
            "schedule.ending_epoch=6",
            "schedule.frequency=2",
            "pruner.initial_sparsity=0.1",
            "pruner.final_sparsity=0.6",
        ]
    )
    records = read_metrics(context.run_dir / "metrics.jsonl")
    for record in records:
        expected = agp_formula(record["epoch"], 0.1, 0.6, start=1, end=6, freq=2)
        assert record["pruning/target_sparsity"] == pytest.approx(expected, abs=1e-12), record["epoch"]
    assert records[-1]["sparsity/total"] == pytest.approx(0.6, abs=1e-3)


def test_step_level_agp_prunes_between_epoch_boundaries(run_experiment):
    from framework.tracking.metrics_file import read_metrics

    _, context, _ = run_experiment(
        ["tracking=none", "pruner=agp", "epochs=3", "schedule.ending_epoch=3", "schedule.step_frequency=5"]
    )
    records = read_metrics(context.run_dir / "metrics.jsonl")
    # epoch 0 starts at target 0, yet steps 5..20 already ramp towards epoch 1's target
    assert records[0]["pruning/target_sparsity"] == 0.0
    assert 0.0 < records[0]["sparsity/total"] < agp_formula(1, 0.0, 0.7, end=3)
    assert records[-1]["sparsity/total"] == pytest.approx(0.7, abs=1e-3)
