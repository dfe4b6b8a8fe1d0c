"""Pruning runs end to end: the structures really zeroed, the logged targets equal the AGP formula."""

from __future__ import annotations

import math

import pytest
import torch
from mlflow.tracking import MlflowClient

from framework.pruning.structures import to_groups
from framework.models import SimpleCNN
from support import store_overrides

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


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset, structure, final, pruned_layers",
    [
        ("agp", "fine", 0.7, ["block1.0.weight", "block2.0.weight", "block3.0.weight", "classifier.weight"]),
        # the filter preset keeps the classifier's rows (the classes) ...
        ("agp_filter", "filter", 0.5, ["block1.0.weight", "block2.0.weight", "block3.0.weight"]),
        # ... and the channel preset the first layer's input planes
        ("agp_channel", "channel", 0.5, ["block2.0.weight", "block3.0.weight", "classifier.weight"]),
    ],
)
def test_agp_presets_zero_exactly_the_requested_structures(
    run_experiment, tracking_overrides, shared_store, preset, structure, final, pruned_layers
):
    overrides = [*tracking_overrides, f"pruner={preset}", f"epochs={EPOCHS}",
                 f"schedule.ending_epoch={END}", "tracking.log_model=false"]
    cfg, context, result = run_experiment(overrides)
    checkpoint = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)
    weights = checkpoint["model"]
    masks = checkpoint["hooks"]["pruning"]["masks"]
    assert sorted(masks) == sorted(pruned_layers)

    for name in pruned_layers:
        weight, layer = weights[name], layer_for(name)
        if structure == "fine":
            expected, zeros = math.floor(final * weight.numel() + 0.5), int((weight == 0).sum())
        else:
            groups = to_groups(weight, structure, layer).shape[0]
            expected, zeros = math.floor(final * groups + 0.5), zero_group_count(weight, structure, layer)
            # every zero is inside a whole zeroed group: nothing fine-grained leaked in
            assert int((weight == 0).sum()) == zeros * weight.numel() // groups, name
        assert zeros == expected, (name, zeros, expected)

    # logged target = the formula at every epoch; sparsity/total follows it
    client = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1])
    run_id = checkpoint["hooks"]["mlflow"]["run_id"]
    targets = {m.step: m.value for m in client.get_metric_history(run_id, "pruning/target_sparsity")}
    totals = {m.step: m.value for m in client.get_metric_history(run_id, "sparsity/total")}
    assert sorted(targets) == list(range(EPOCHS))
    for epoch in range(EPOCHS):
        assert targets[epoch] == pytest.approx(agp_formula(epoch, 0.0, final), abs=1e-12), epoch
        # within rounding of one group per layer
        assert totals[epoch] == pytest.approx(targets[epoch], abs=0.02), epoch
    assert totals[EPOCHS - 1] == pytest.approx(final, abs=0.02)
    assert [totals[e] for e in range(EPOCHS)] == sorted(totals.values())  # never decreases

    artifacts = {a.path for a in client.list_artifacts(run_id, "pruning")}
    assert {"pruning/sparsity.csv", "pruning/sparsity.md", "pruning/sparsity.png", "pruning/macs.md"} <= artifacts
    assert result["val/top1"] > 0.8


def test_frequency_two_target_formula_is_logged(run_experiment, tmp_path):
    from framework.tracking.metrics_file import read_metrics

    _, context, _ = run_experiment(["tracking=none", "pruner=agp", "epochs=6", "schedule.starting_epoch=1",
                                    "schedule.ending_epoch=6", "schedule.frequency=2",
                                    "pruner.initial_sparsity=0.1", "pruner.final_sparsity=0.6"])
    records = read_metrics(context.run_dir / "metrics.jsonl")
    for record in records:
        expected = agp_formula(record["epoch"], 0.1, 0.6, start=1, end=6, freq=2)
        assert record["pruning/target_sparsity"] == pytest.approx(expected, abs=1e-12), record["epoch"]
    assert records[-1]["sparsity/total"] == pytest.approx(0.6, abs=1e-3)


def test_step_level_agp_prunes_between_epoch_boundaries(run_experiment):
    from framework.tracking.metrics_file import read_metrics

    _, context, _ = run_experiment(["tracking=none", "pruner=agp", "epochs=3", "schedule.ending_epoch=3",
                                    "schedule.step_frequency=5"])
    records = read_metrics(context.run_dir / "metrics.jsonl")
    # epoch 0 starts at target 0, yet steps 5..20 already ramp towards epoch 1's target
    assert records[0]["pruning/target_sparsity"] == 0.0
    assert 0.0 < records[0]["sparsity/total"] < agp_formula(1, 0.0, 0.7, end=3)
    assert records[-1]["sparsity/total"] == pytest.approx(0.7, abs=1e-3)
