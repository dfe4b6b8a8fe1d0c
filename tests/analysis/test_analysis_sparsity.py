"""Sparsity table: hand-computed rows, total row, CSV and Markdown writers."""

import csv

import pytest
import torch
from torch import nn

from framework.analysis.sparsity import TOTAL_LABEL, sparsity_table, to_markdown, write_csv, write_markdown
from framework.errors import PruningError


def pruned_model():
    model = nn.Sequential(nn.Conv2d(2, 4, 1, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, -1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]).reshape(4, 2, 1, 1))
        # filters (rows of 2) = [1, -1], [0, 0], [2, 0], [0, 0]: filters 1 and 3 are all zero;
        # channels (columns) = [1, 0, 2, 0], [-1, 0, 0, 0]: none is all zero.
        model[1].weight.copy_(torch.tensor([[0.0, 3.0, 0.0, 0.0], [0.0, -3.0, 0.0, 0.0]]))
        # Linear: filter (row) sparsity 0/2, channel (column) sparsity 3/4
    return model


def test_rows_are_hand_computed():
    rows = sparsity_table(pruned_model(), ["0.weight", "1.weight"])
    conv, linear, total = rows
    assert (conv.name, conv.shape, conv.nnz_dense, conv.nnz_sparse) == ("0.weight", "(4, 2, 1, 1)", 8, 3)
    assert conv.fine_pct == pytest.approx(62.5)
    assert conv.filter_pct == pytest.approx(50.0)
    assert conv.channel_pct == pytest.approx(0.0)
    assert conv.mean_abs == pytest.approx(0.5)
    assert conv.std == pytest.approx(torch.tensor([1.0, -1, 0, 0, 2, 0, 0, 0]).std(correction=0).item())
    assert linear.fine_pct == pytest.approx(75.0)
    assert (linear.filter_pct, linear.channel_pct) == (pytest.approx(0.0), pytest.approx(75.0))

    assert total.name == TOTAL_LABEL == "total (pruned weights)"
    assert (total.nnz_dense, total.nnz_sparse) == (16, 5)
    assert total.fine_pct == pytest.approx(100 * 11 / 16)
    assert total.filter_pct == pytest.approx(100 * 2 / 6)  # 2 zero filters of 4 + 2
    assert total.channel_pct == pytest.approx(100 * 3 / 6)  # 0 of 2 + 3 of 4
    assert total.mean_abs == pytest.approx(10 / 16)


def test_grouped_conv_channels_use_the_structure_definition():
    layer = nn.Conv2d(4, 4, 1, groups=2, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.weight[2:4, 1] = 0.0  # input channel 3: group 1, local index 1
    row = sparsity_table(nn.Sequential(layer), ["0.weight"])[0]
    assert row.channel_pct == pytest.approx(25.0)
    assert row.filter_pct == pytest.approx(0.0)


def test_parameters_without_structure_leave_filter_and_channel_empty():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    rows = sparsity_table(model, ["0.bias", "1.weight"])
    assert rows[0].filter_pct is None and rows[1].channel_pct is None
    assert rows[-1].filter_pct is None


def test_default_names_and_wrapper_prefix():
    model = pruned_model()
    assert [r.name for r in sparsity_table(model)][:-1] == ["0.weight", "1.weight"]
    assert [r.name for r in sparsity_table(model, ["module.1.weight"])][:-1] == ["1.weight"]
    with pytest.raises(PruningError, match="'2.weight' is not a parameter"):
        sparsity_table(model, ["2.weight"])


def test_csv_and_markdown_writers(tmp_path):
    rows = sparsity_table(pruned_model(), ["0.weight", "1.weight"])
    with write_csv(rows, tmp_path / "out" / "sparsity.csv").open() as handle:
        records = list(csv.DictReader(handle))
    assert [r["name"] for r in records] == ["0.weight", "1.weight", TOTAL_LABEL]
    assert float(records[0]["fine_pct"]) == pytest.approx(62.5)
    assert records[2]["shape"] == ""

    text = write_markdown(rows, tmp_path / "sparsity.md").read_text()
    assert text == to_markdown(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| name | shape | nnz_dense")
    assert len(lines) == 2 + len(rows)
    assert "| 0.weight | (4, 2, 1, 1) | 8 | 3 | 62.5 | 50 | 0 |" in text
