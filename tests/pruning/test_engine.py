"""Engine: schedules driving masks end to end, persistence."""

import io

import pytest
import torch
from torch import nn

from framework.errors import CheckpointError
from framework.pruning import NoOpPruner, build_pruner


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


def zero_filters(weight):
    return int((weight.detach().reshape(weight.shape[0], -1) == 0).all(dim=1).sum())


def train_step(model, optimizer):
    optimizer.zero_grad()
    model(torch.randn(2, 3, 6, 6)).pow(2).sum().backward()
    optimizer.step()


def test_agp_filter_pruning_follows_the_schedule():
    model = tiny_model()
    pruner = build_pruner(
        model,
        method="agp",
        structure="filter",
        final_sparsity=0.5,
        starting_epoch=1,
        ending_epoch=4,
        coupling="layer",
        skip_output_layer=False,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    expected_targets = {0: None, 1: 0.0, 2: 0.5 * (1 - 0.5**3), 3: 0.5, 4: None}
    for epoch, target in expected_targets.items():
        returned = pruner.on_epoch_start(epoch)
        assert returned == pytest.approx(target) if target is not None else returned is None
        for _ in range(2):
            train_step(model, optimizer)
            pruner.after_step()
        scheduled = pruner.target_sparsity(epoch)
        for layer in (model[0], model[3]):
            assert zero_filters(layer.weight) == int(scheduled * 8 + 0.5)
        assert zero_filters(model[6].weight) == int(scheduled * 4 + 0.5)
    assert pruner.sparsity()["total"] == pytest.approx(0.5, abs=0.01)
    assert set(pruner.masks) == {"0.weight", "3.weight", "6.weight"}


def test_after_step_undoes_optimizer_regrowth():
    model = tiny_model()
    pruner = build_pruner(model, method="level", structure="fine", final_sparsity=0.6, ending_epoch=1)
    pruner.on_epoch_start(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    train_step(model, optimizer)
    assert pruner.sparsity()["0.weight"] < 0.6  # the step moved pruned weights
    pruner.after_step()
    sparsity = pruner.sparsity()
    assert sparsity["0.weight"] == pytest.approx(0.6, abs=0.01) and sparsity["total"] == pytest.approx(0.6, abs=0.01)


def test_gradient_masking_keeps_pruned_weights_at_zero_without_after_step():
    model = tiny_model()
    pruner = build_pruner(model, method="level", final_sparsity=0.5, ending_epoch=1, mask_gradients=True)
    pruner.on_epoch_start(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        train_step(model, optimizer)
    for name, mask in pruner.masks.items():
        weight = dict(model.named_parameters())[name]
        assert torch.count_nonzero(weight[~mask]) == 0
    pruner.close()


def test_levels_give_per_layer_targets():
    model = tiny_model()
    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=0.25,
        levels={"3.*": 0.5, "6.weight": 0.0},
        ending_epoch=1,
        coupling="layer",
        skip_output_layer=False,
    )
    pruner.on_epoch_start(0)
    assert [zero_filters(model[i].weight) for i in (0, 3, 6)] == [2, 4, 0]
    assert pruner.layer_targets(0) == {"0.weight": 0.25, "3.weight": 0.5, "6.weight": 0.0}


def test_magnitude_returns_reached_sparsity():
    model = tiny_model()
    with torch.no_grad():
        model[6].weight.copy_(torch.linspace(-1, 1, 32).reshape(4, 8))
    pruner = build_pruner(model, method="magnitude", threshold=0.5, weights=["6.weight"], ending_epoch=3, frequency=2)
    assert pruner.target_sparsity(0) is None
    reached = pruner.on_epoch_start(0)
    assert reached == pytest.approx(16 / 32)
    assert pruner.on_epoch_start(1) is None


def test_std_threshold_prunes_below_std_multiple():
    model = tiny_model()
    weight = model[6].weight
    pruner = build_pruner(model, method="std_threshold", std_multiplier=1.0, weights=["6.weight"], ending_epoch=1)
    expected = (weight.detach().abs() < weight.detach().std(correction=0)).sum().item() / weight.numel()
    pruner.on_epoch_start(0)
    assert pruner.sparsity()["6.weight"] == pytest.approx(expected)


def test_custom_ranking_view_changes_what_is_pruned():
    model = tiny_model()

    # Rank filter i of the Linear layer by i alone: the view decides, the raw weights do not.
    def view(name, weight):
        if name == "6.weight":
            return torch.arange(4.0).reshape(4, 1).expand(4, 8)
        return weight

    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=0.5,
        weights=["6.weight"],
        ending_epoch=1,
        ranking_view=view,
        coupling="layer",
    )
    pruner.on_epoch_start(0)
    assert pruner.masks["6.weight"].all(dim=1).tolist() == [False, False, True, True]
    assert torch.count_nonzero(model[6].weight[:2]) == 0


def test_state_dict_round_trip_with_weights_only_load():
    model = tiny_model()
    pruner = build_pruner(
        model, method="agp", structure="channel", criterion="random", final_sparsity=0.5, ending_epoch=3
    )
    pruner.on_epoch_start(0)
    pruner.on_epoch_start(1)
    buffer = io.BytesIO()
    torch.save(pruner.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    resumed_model = tiny_model()  # same seed: same dense weights
    resumed = build_pruner(
        resumed_model, method="agp", structure="channel", criterion="random", final_sparsity=0.5, ending_epoch=3
    )
    resumed.load_state_dict(state)
    for name, mask in pruner.masks.items():
        assert torch.equal(resumed.masks[name], mask)
        assert torch.count_nonzero(dict(resumed_model.named_parameters())[name][~mask]) == 0
    # Random criterion state travels too: both continue identically.
    pruner.on_epoch_start(2)
    resumed.on_epoch_start(2)
    for name, mask in pruner.masks.items():
        assert torch.equal(resumed.masks[name], mask)


def test_a_checkpoint_from_before_the_rule_rename_resumes_its_random_criterion():
    pruner = build_pruner(tiny_model(), method="level", criterion="random", seed=1, ending_epoch=1)
    pruner.rule.criterion(torch.zeros(3, 1))  # the generator moves on
    state = pruner.state_dict()
    state["pruner"] = state.pop("rule")  # where checkpoints kept the rule's state before
    resumed = build_pruner(tiny_model(), method="level", criterion="random", seed=1, ending_epoch=1)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.rule.criterion(torch.zeros(5, 1)), pruner.rule.criterion(torch.zeros(5, 1)))


def test_state_dict_from_another_method_is_rejected():
    state = build_pruner(tiny_model(), method="level", ending_epoch=1).state_dict()
    other = build_pruner(tiny_model(), method="agp", ending_epoch=1)
    with pytest.raises(CheckpointError, match="pruner.method=level; this run uses pruner.method=agp"):
        other.load_state_dict(state)


def test_method_none_is_a_no_op():
    model = tiny_model()
    before = [p.clone() for p in model.parameters()]
    pruner = build_pruner(model, method="none", final_sparsity=5)
    assert isinstance(pruner, NoOpPruner)
    assert pruner.on_epoch_start(0) is None
    pruner.after_step()
    assert pruner.masks == {} and pruner.sparsity() == {"total": 0.0}
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_engine_does_not_import_hydra_or_mlflow():
    import subprocess
    import sys

    code = "import sys, framework.pruning, framework.analysis; print(any(m.split('.')[0] in ('hydra', 'mlflow', 'omegaconf') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_fold_batchnorm_ranks_on_folded_weights():
    model = tiny_model()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].weight.copy_(torch.arange(1.0, 9.0))  # gamma grows with the filter index ...
        model[1].weight[7] = 0.01  # ... except filter 7, which BN nearly switches off
    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=0.25,
        weights=["0.weight"],
        ending_epoch=1,
        fold_batchnorm=True,
        coupling="layer",
    )
    assert [pair.weight_name for pair in pruner.fold_pairs] == ["0.weight"]
    pruner.on_epoch_start(0)
    # Raw weights are all equal; only the folded view can single out filters 0 and 7.
    assert pruner.masks["0.weight"].reshape(8, -1).all(dim=1).tolist() == [
        False,
        True,
        True,
        True,
        True,
        True,
        True,
        False,
    ]
    assert pruner.parameter_names == ["0.weight"]


def test_apply_masks_rezeroes_after_external_changes():
    model = tiny_model()
    pruner = build_pruner(model, method="level", final_sparsity=0.5, ending_epoch=1)
    pruner.on_epoch_start(0)
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(1.0)  # e.g. a checkpoint's dense weights loaded on top
    pruner.apply_masks()
    assert pruner.sparsity()["total"] == pytest.approx(0.5, abs=0.01)
    assert build_pruner(model, method="none").fold_pairs == []
