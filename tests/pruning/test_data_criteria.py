"""Data-aware criteria (taylor, activation_mean, apoz, bn_gamma) against values computed by hand,
and the calibration pass that feeds them (only at pruning moments, same batches, no side effects)."""

from __future__ import annotations

import textwrap
import warnings

import pytest
import torch
from hand_models import TwoLayer
from torch import nn

from framework.errors import PruningError
from framework.models.cifar_resnet import CifarResNet
from framework.models.simple_cnn import SimpleCNN
from framework.pruning import build_pruner
from framework.pruning.scores.calibration import seeded_batches


def sum_loss(output, targets):
    return output.sum()


X = torch.tensor([[1.0, 1.0]])  # h = W1 x = [3, 1, 2]
TWO_BATCHES = [(X, torch.zeros(1)), (X, torch.zeros(1))]


def level(model, **kwargs):
    arguments = dict(method="level", final_sparsity=1 / 3, starting_epoch=0, ending_epoch=1, coupling="layer")
    arguments.update(kwargs)
    return build_pruner(model, **arguments)


def test_taylor_filter_is_the_squared_group_sum_of_w_times_g_over_batches():
    model = TwoLayer()
    pruner = level(model, structure="filter", criterion="taylor", weights=["fc1.weight"])
    pruner.set_calibration_data(TWO_BATCHES, loss_fn=sum_loss)
    pruner.on_epoch_start(0)
    # row o: sum_i W1[o,i]·W2[0,o]·x_i = W2[0,o]·h_o = 3, -4, 1 -> squared 9, 16, 1, twice
    scores = pruner.rule.criterion.group_scores("fc1.weight", model.fc1, model.fc1.weight, "filter")
    assert scores.tolist() == [18.0, 32.0, 2.0]
    # the lowest (row 2) goes, although l1 would remove row 1 (mean |w| 0.5)
    assert pruner.masks["fc1.weight"].all(dim=1).tolist() == [True, True, False]


def test_taylor_channel_and_fine_by_hand():
    model = TwoLayer()
    pruner = level(model, structure="channel", criterion="taylor", weights=["fc2.weight"], skip_input_layer=False)
    pruner.set_calibration_data(TWO_BATCHES[:1], loss_fn=sum_loss)
    pruner.on_epoch_start(0)
    # column o of W2: W2[0,o]·dL/dW2[0,o] = W2[0,o]·h_o = 3, -4, 1
    scores = pruner.rule.criterion.group_scores("fc2.weight", model.fc2, model.fc2.weight, "channel")
    assert scores.tolist() == [9.0, 16.0, 1.0]

    model = TwoLayer()
    pruner = level(model, structure="fine", criterion="taylor", weights=["fc1.weight"], final_sparsity=0.5)
    pruner.set_calibration_data(TWO_BATCHES[:1], loss_fn=sum_loss)
    pruner.on_epoch_start(0)
    w1 = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]])
    g1 = torch.tensor([1.0, -4.0, 0.5]).reshape(3, 1) * X  # W2[0,o]·x_i
    expected = (w1 * g1).square().reshape(-1)
    scores = pruner.rule.criterion.group_scores("fc1.weight", model.fc1, w1, "fine")
    assert torch.equal(scores.float(), expected)
    # w·g = [[1, 2], [0, -4], [1.5, -0.5]]: the three smallest |w·g| (0, 0.5, 1) are gone
    kept = (w1 * g1)[pruner.masks["fc1.weight"]].abs().sort().values.tolist()
    assert kept == [1.5, 2.0, 4.0]


class ReluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# relu(fc1 x) for x = [1,-1] -> [1,0,0]; x = [2,3] -> [2,3,0]
RELU_BATCH = [(torch.tensor([[1.0, -1.0], [2.0, 3.0]]), torch.tensor([0, 1]))]


@pytest.mark.parametrize("criterion, expected", [("activation_mean", [3.0, 3.0, 0.0]), ("apoz", [2.0, 1.0, 0.0])])
@pytest.mark.parametrize("structure, weight", [("filter", "fc1.weight"), ("channel", "fc2.weight")])
def test_activation_criteria_by_hand(criterion, expected, structure, weight):
    model = ReluNet()
    pruner = level(
        model,
        structure=structure,
        criterion=criterion,
        weights=[weight],
        skip_input_layer=False,
        skip_output_layer=False,
    )
    pruner.set_calibration_data(RELU_BATCH)
    pruner.on_epoch_start(0)
    layer = model.fc1 if weight == "fc1.weight" else model.fc2
    scores = pruner.rule.criterion.group_scores(weight, layer, layer.weight, structure)
    # per-sample values summed over the two samples: the mean value / the share of non-zeros
    assert scores.tolist() == expected
    removed = (~pruner.masks[weight]).all(dim=1 if structure == "filter" else 0)
    assert removed.tolist() == [False, False, True]


def test_bn_gamma_by_hand_filter_and_channel():
    torch.manual_seed(0)
    model = SimpleCNN(in_channels=1, width=0.125)  # widths 4, 8, 16
    with torch.no_grad():
        model.block1[1].weight.copy_(torch.tensor([0.5, -3.0, 0.1, 2.0]))
    pruner = level(model, structure="filter", criterion="bn_gamma", weights=["block1.0.weight"], final_sparsity=0.5)
    pruner.on_epoch_start(0)  # no data needed
    assert pruner.masks["block1.0.weight"].flatten(1).all(dim=1).tolist() == [False, True, False, True]

    model = SimpleCNN(in_channels=1, width=0.125)
    with torch.no_grad():
        model.block1[1].weight.copy_(torch.tensor([0.5, -3.0, 0.1, 2.0]))
    pruner = level(model, structure="channel", criterion="bn_gamma", weights=["block2.0.weight"], final_sparsity=0.5)
    pruner.on_epoch_start(0)
    # block2 reads block1's BN output (through its ReLU): its input channels go by |γ1|
    assert pruner.masks["block2.0.weight"].transpose(0, 1).flatten(1).all(dim=1).tolist() == [False, True, False, True]


def test_apoz_needs_an_activation_and_bn_gamma_a_batchnorm_naming_the_layer():
    with pytest.raises(PruningError, match=r"criterion=apoz needs a ReLU/ReLU6 module.*layer fc1 has none") as error:
        level(TwoLayer(), structure="filter", criterion="apoz", weights=["fc1.weight"])
    assert "\n" not in str(error.value)
    with pytest.raises(PruningError, match=r"criterion=bn_gamma needs a BatchNorm directly after.*layer fc1 has none"):
        level(TwoLayer(), structure="filter", criterion="bn_gamma", weights=["fc1.weight"])


@pytest.mark.parametrize("criterion", ["activation_mean", "apoz", "bn_gamma"])
def test_structures_a_criterion_cannot_rank_are_refused(criterion):
    refusal = rf"criterion={criterion} does not support pruner.structure=fine; allowed: filter, channel"
    with pytest.raises(PruningError, match=refusal):
        level(ReluNet(), structure="fine", criterion=criterion)


@pytest.mark.parametrize("criterion", ["taylor", "activation_mean", "apoz", "bn_gamma"])
@pytest.mark.parametrize("fold", [True, "activation"])
def test_fold_batchnorm_is_refused_with_a_reason(criterion, fold):
    refusal = (
        rf"fold_batchnorm={fold} cannot be combined with pruner.criterion={criterion}: "
        r".*allowed: fold_batchnorm=false"
    )
    with pytest.raises(PruningError, match=refusal):
        level(SimpleCNN(in_channels=1, width=0.125), structure="filter", criterion=criterion, fold_batchnorm=fold)


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "8"])
def test_calibration_batches_must_be_a_positive_integer(value):
    with pytest.raises(PruningError, match=r"pruner.calibration_batches=.* is invalid; allowed: an integer >= 1"):
        level(TwoLayer(), structure="filter", criterion="l1", calibration_batches=value)


def test_ranking_without_data_says_how_to_give_it():
    pruner = level(TwoLayer(), structure="filter", criterion="taylor", weights=["fc1.weight"])
    refusal = r"criterion=taylor needs calibration data; call pruner.set_calibration_data"
    with pytest.raises(PruningError, match=refusal):
        pruner.on_epoch_start(0)


def digits_like(n=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 1, 8, 8, generator=generator)
    return torch.utils.data.TensorDataset(inputs, torch.randint(0, 10, (n,), generator=generator))


def test_the_pass_runs_only_when_pruning_and_changes_nothing_the_training_sees():
    torch.manual_seed(0)
    model = SimpleCNN(in_channels=1, width=0.125)
    pruner = build_pruner(
        model,
        method="agp",
        structure="filter",
        criterion="taylor",
        final_sparsity=0.5,
        starting_epoch=1,
        ending_epoch=3,
        calibration_batches=2,
        input_shape=(1, 8, 8),
    )
    pruner.set_calibration_data(seeded_batches(digits_like(), batch_size=4, seed=3))
    model.train()
    model.block2[0].weight.grad = torch.ones_like(model.block2[0].weight)
    running = model.block1[1].running_mean.clone()
    passes = []
    for epoch in range(6):
        pruner.on_epoch_start(epoch)
        passes.append(pruner.calibration.passes)
    assert passes == [0, 1, 2, 2, 2, 2]  # AGP prunes at epochs 1 and 2 only
    assert model.training and model.block1[1].training
    assert torch.equal(model.block1[1].running_mean, running)  # eval mode: no BN update
    assert torch.equal(model.block2[0].weight.grad, torch.ones_like(model.block2[0].weight))
    assert model.block1[0].weight.grad is None
    pruner.update_masks(2)  # ranking again at the same moment (sensitivity) reuses the sums
    assert pruner.calibration.passes == 2


def test_same_seed_same_batches_same_masks_as_after_a_resume():
    def masks(seed):
        torch.manual_seed(0)
        model = SimpleCNN(in_channels=1, width=0.25)
        pruner = build_pruner(
            model,
            method="level",
            structure="filter",
            criterion="taylor",
            final_sparsity=0.5,
            starting_epoch=0,
            ending_epoch=1,
            input_shape=(1, 8, 8),
            calibration_batches=2,
        )
        pruner.set_calibration_data(seeded_batches(digits_like(64), batch_size=4, seed=seed))
        pruner.on_epoch_start(0)
        return pruner.rule.criterion.sums, pruner.masks

    sums_a, masks_a = masks(1)
    sums_b, masks_b = masks(1)
    sums_c, _ = masks(2)
    assert all(torch.equal(sums_a[k], sums_b[k]) for k in sums_a)
    assert all(torch.equal(masks_a[k], masks_b[k]) for k in masks_a)
    assert any(not torch.equal(sums_a[k], sums_c[k]) for k in sums_a)  # other seed, other batches


@pytest.mark.parametrize("criterion", ["taylor", "activation_mean", "apoz", "bn_gamma"])
@pytest.mark.parametrize("structure", ["filter", "channel"])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_every_criterion_prunes_a_resnet_coupled_and_global(criterion, structure, scope):
    torch.manual_seed(0)
    model = CifarResNet(depth=8, in_channels=1, width=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = build_pruner(
            model,
            method="level",
            structure=structure,
            criterion=criterion,
            final_sparsity=0.4,
            starting_epoch=0,
            ending_epoch=1,
            scope=scope,
            group_reduction="sum",
            input_shape=(1, 8, 8),
            calibration_batches=2,
        )
        pruner.set_calibration_data(seeded_batches(digits_like(), batch_size=4, seed=0))
        pruner.on_epoch_start(0)
    total = pruner.sparsity()["total"]
    assert 0.3 < total < 0.8
    out = model(torch.randn(2, 1, 8, 8))
    assert torch.isfinite(out).all()


def test_a_users_criterion_in_its_own_folder_asks_for_data(tmp_path, monkeypatch):
    (tmp_path / "my_criteria.py").write_text(
        textwrap.dedent('''
        from framework.pruning.scores.data_criteria import DataCriterion

        class OutputTaylor(DataCriterion):
            """Molchanov 2017: |mean over positions of output * dL/d(output)| per filter."""
            name = "output_taylor"
            needs = ("output", "output_grad")
            structures = ("filter",)

            def observe(self, name, layer, record, structure):
                product = (record.output * record.output_grad).flatten(2).mean(dim=2)
                self.add(name, product.abs().sum(dim=0))

            def group_scores(self, name, layer, weight, structure):
                return self.accumulated(name)
    ''')
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from hydra.utils import instantiate

    criterion = instantiate({"_target_": "my_criteria.OutputTaylor"})
    torch.manual_seed(0)
    model = SimpleCNN(in_channels=1, width=0.125)
    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        criterion=criterion,
        final_sparsity=0.5,
        starting_epoch=0,
        ending_epoch=1,
        coupling="layer",
        weights=["block2.0.weight"],
    )
    batch = next(iter(seeded_batches(digits_like(), batch_size=8, seed=0)(0.0)))
    pruner.set_calibration_data([batch])
    # the same numbers by hand, before pruning: one forward, the loss gradient at block2's conv output
    captured = {}
    handle = model.block2[0].register_forward_hook(lambda m, a, out: captured.setdefault("out", out))
    model.eval()
    loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
    (grad,) = torch.autograd.grad(loss, captured["out"])
    handle.remove()
    expected = (captured["out"] * grad).flatten(2).mean(dim=2).abs().sum(dim=0).double()
    pruner.on_epoch_start(0)
    assert torch.allclose(criterion.sums["block2.0.weight"], expected)
    kept = pruner.masks["block2.0.weight"].flatten(1).all(dim=1)
    assert set(expected.argsort()[:4].tolist()) == set((~kept).nonzero().flatten().tolist())
