"""Per-layer sparsity bar chart (PNG).

Uses matplotlib's object API with the Agg canvas directly, so it neither needs a display nor
changes the global pyplot backend of the host program. matplotlib is imported inside the function
so that importing :mod:`framework.analysis` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from framework.analysis.sparsity import SparsityRow
from framework.pruning.spec import CHANNEL, FILTER, FINE


def plot_layer_sparsity(rows: Sequence[SparsityRow], path: str | Path, title: str = "Per-layer sparsity") -> Path:
    """Horizontal bars of fine-grained sparsity per layer, plus filter and channel sparsity when
    any layer has them. Total rows (shape "") are left out: they are not layers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = [row for row in rows if row.shape]
    series = {FINE: [row.fine_pct for row in layers]}
    for label, attribute in ((FILTER, "filter_pct"), (CHANNEL, "channel_pct")):
        values = [getattr(row, attribute) for row in layers]
        if any(v for v in values):
            series[label] = [v or 0.0 for v in values]

    height = 1.5 + 0.28 * max(len(layers), 1) * len(series) ** 0.5
    figure = Figure(figsize=(8, height))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bar_height = 0.8 / len(series)
    for index, (label, values) in enumerate(series.items()):
        positions = [i + index * bar_height for i in range(len(layers))]
        axes.barh(positions, values, height=bar_height, label=label)
    axes.set_yticks([i + 0.4 - bar_height / 2 for i in range(len(layers))])
    axes.set_yticklabels([row.name for row in layers], fontsize=7)
    axes.invert_yaxis()  # first layer on top, like the table
    axes.set_xlim(0, 100)
    axes.set_xlabel("sparsity (%)")
    axes.set_title(title)
    axes.legend(loc="lower right")
    figure.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
