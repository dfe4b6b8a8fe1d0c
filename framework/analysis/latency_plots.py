"""A latency table drawn: the model's predicted latency against each group's width (PNG).

One panel per dependency group, the other groups at full width: the curve the allocation reads,
with its latency steps (the widths worth pruning to) marked. matplotlib's object API on the Agg
canvas, imported inside the function (as :mod:`.plots`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from framework.pruning.budget.latency_table import LatencyTable


def plot_latency_table(table: LatencyTable, path: str | Path, title: str = "", groups: Sequence[str] = ()) -> Path:
    """Latency (the table's unit) against width, one panel per group (``groups``: these only)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(groups) or list(table.groups)
    columns = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / columns) if names else 1
    figure = Figure(figsize=(3.2 * columns, 2.4 * rows + 0.6))
    FigureCanvasAgg(figure)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        curve = table.group_curve(name)
        widths = sorted(curve)
        axes.plot(widths, [curve[w] for w in widths], color="tab:blue", linewidth=1.2)
        steps = table.latency_steps(name)
        axes.plot(steps, [curve[w] for w in steps], "o", color="tab:orange", markersize=3)
        axes.set_title(name, fontsize=8)
        axes.tick_params(labelsize=7)
        axes.set_xlabel("kept channels", fontsize=7)
        axes.set_ylabel(table.unit, fontsize=7)
    heading = title or (
        f"{table.runtime}, {table.threads} thread(s), batch {table.batch}: latency against width "
        "(others at full width; dots: latency steps)"
    )
    figure.suptitle(heading, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
