"""write_pruning_reports: every report lands in the folder."""

import torch
from torch import nn

from framework.analysis import write_pruning_reports


def test_all_reports_are_written(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    with torch.no_grad():
        model[0].weight[1] = 0.0
    paths = write_pruning_reports(model, ["0.weight", "2.weight"], tmp_path / "pruning", input_shape=(1, 3, 6, 6))
    assert sorted(p.name for p in paths) == ["macs.csv", "macs.md", "sparsity.csv", "sparsity.md", "sparsity.png"]
    assert all(p.parent == tmp_path / "pruning" and p.stat().st_size > 0 for p in paths)
    assert "0.weight" in (tmp_path / "pruning" / "sparsity.md").read_text()
    assert len(write_pruning_reports(model, None, tmp_path / "no_macs")) == 3
