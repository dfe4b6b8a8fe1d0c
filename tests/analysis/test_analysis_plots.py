"""Sparsity bar chart: a real PNG, layers only."""

import torch
from torch import nn

from framework.analysis.plots import plot_layer_sparsity
from framework.analysis.sparsity import sparsity_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_writes_a_png(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight[0] = 0.0
    path = plot_layer_sparsity(sparsity_table(model), tmp_path / "plots" / "sparsity.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_does_not_switch_the_pyplot_backend(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    plot_layer_sparsity(sparsity_table(nn.Sequential(nn.Linear(3, 2))), tmp_path / "p.png")
    assert matplotlib.get_backend() == backend
