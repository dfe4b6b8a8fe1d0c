"""The sensitivity rows against hand-computed values on a tiny model; restore, resume, workers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from framework.analysis import sensitivity as sens
from framework.pruning import build_pruner

torch.set_num_threads(1)


def _tiny():
    """Two Linear layers on 6 features, 3 classes, fixed weights; 40 fixed samples."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    inputs = torch.randn(40, 6)
    with torch.no_grad():
        labels = model(inputs).argmax(1)
        labels[::4] = (labels[::4] + 1) % 3  # a quarter wrong: the dense top-1 is 0.75
    return model, [(inputs[:25], labels[:25]), (inputs[25:], labels[25:])]


def _by_hand(model, batches, layer_index, level):
    """Zero the round(level * n) smallest |w| of that layer (ties by index), count correct argmaxes."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    weight = state[f"{layer_index}.weight"].reshape(-1)
    k = int(level * weight.numel() + 0.5)
    order = sorted(range(weight.numel()), key=lambda i: (abs(float(weight[i])), i))
    for i in order[:k]:
        weight[i] = 0.0
    copy = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    copy.load_state_dict(state)
    correct = total = 0
    with torch.no_grad():
        for inputs, labels in batches:
            correct += int((copy(inputs).argmax(1) == labels).sum())
            total += labels.numel()
    return correct / total, k


@pytest.mark.parametrize("workers", [1, 2])
def test_each_row_is_the_model_with_only_that_layer_pruned_and_the_model_is_unchanged(workers):
    model, batches = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = build_pruner(model, method="level", structure="fine", final_sparsity=0.5, starting_epoch=0, ending_epoch=1)
    analysis = sens.Analysis(model, engine, batches, "cpu", input_shape=(6,))
    rows = []
    levels = [0.3, 0.6, 0.9]
    sens.run_rows(analysis, levels, set(), rows.append, workers=workers)
    assert sorted((r.unit, r.level) for r in rows) == sorted((f"{i}.weight", v) for i in (0, 2) for v in levels)
    for row in rows:
        layer = int(row.unit.split(".")[0])
        expected_top1, zeroed = _by_hand(model, batches, layer, row.level)
        assert row.top1 == pytest.approx(expected_top1), row
        assert row.pruned_weights == zeroed
        assert row.pruned_params == zeroed  # fine-grained: only weights go
    dense = analysis.dense_row()
    assert dense.top1 == pytest.approx(0.75)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert engine.masks == {}  # the engine is as it was built: no masks left behind


def test_coupled_units_are_dependency_groups_and_count_every_removed_parameter():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()
    with torch.no_grad():  # a fresh BN's beta is 0 already: make every BN entry non-zero
        for bn in (model[1], model[4]):
            bn.bias.uniform_(0.5, 1.0)
    batches = [(torch.randn(8, 1, 5, 5), torch.randint(0, 3, (8,)))]
    engine = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=0.5,
        starting_epoch=0,
        ending_epoch=1,
        input_shape=(1, 5, 5),
    )
    analysis = sens.Analysis(model, engine, batches, "cpu", input_shape=(1, 5, 5))
    assert [u.name for u in analysis.units] == ["0", "3"]
    row = analysis.row(analysis.units[0], 0.5)
    # two of conv0's four filters: their 2x9 weights + 2 biases, BN gamma/beta 2+2, conv3's 2 input columns 6x2x9
    assert row.pruned_weights == 2 * 9 + 6 * 2 * 9
    assert row.pruned_params == 2 * 9 + 2 + 2 + 2 + 6 * 2 * 9
    # MACs per sample: conv0 25*4*9, conv3 25*6*4*9; half of conv0's filters and of conv3's inputs go
    assert row.pruned_macs == 25 * 2 * 9 + 25 * 6 * 2 * 9


def test_an_interrupted_analysis_keeps_its_rows_and_computes_only_the_rest(tmp_path):
    model, batches = _tiny()
    engine = build_pruner(model, method="level", structure="fine", final_sparsity=0.5, starting_epoch=0, ending_epoch=1)
    analysis = sens.Analysis(model, engine, batches, "cpu")
    path = tmp_path / "rows.csv"
    writer = sens.RowWriter(path)
    marker = sens.Row("0.weight", 0.3, 0.123, 0.5, 9.0)  # a value no real evaluation gives
    writer(marker)
    writer.close()
    with path.open("a") as handle:
        handle.write("2.weight,0.3,0.9")  # a line torn by a kill
    rows = sens.read_rows(path)
    assert rows == [marker]
    writer = sens.RowWriter(path)
    sens.run_rows(analysis, [0.3], {(r.unit, r.level) for r in rows}, writer)
    writer.close()
    final = sens.read_rows(path)
    assert [(r.unit, r.top1) for r in final][0] == ("0.weight", 0.123)  # kept, not recomputed
    assert [r.unit for r in final] == ["0.weight", "2.weight"]


def test_derived_levels_meet_a_sparsity_budget_and_the_drop_budget_takes_the_highest_allowed_level():
    model, batches = _tiny()
    engine = build_pruner(model, method="level", structure="fine", final_sparsity=0.5, starting_epoch=0, ending_epoch=1)
    analysis = sens.Analysis(model, engine, batches, "cpu", input_shape=(6,))
    rows = [analysis.dense_row()]
    levels = [0.2, 0.4, 0.6, 0.8]
    sens.run_rows(analysis, levels, set(), rows.append)
    derived = sens.derive_levels(rows, analysis.units, "sparsity", 0.5, analysis.cost_of, analysis.totals)
    assert derived.measured["sparsity"] >= 0.5
    assert set(derived.weight_levels) == {"0.weight", "2.weight"}
    dense = rows[0].top1
    for budget in (0.0, 0.2):
        derived = sens.derive_levels(rows, analysis.units, "top1_drop", budget, analysis.cost_of, analysis.totals)
        for unit in analysis.units:
            curve = sorted((r.level, r.top1) for r in rows if r.unit == unit.name)
            allowed, worst = 0.0, 0.0
            for level, top1 in curve:  # by hand: the largest level before the drop first exceeds the budget
                worst = max(worst, dense - top1)
                if worst <= budget:
                    allowed = level
            assert derived.unit_levels[unit.name] == allowed
