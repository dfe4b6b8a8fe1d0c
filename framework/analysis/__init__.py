"""Post-pruning analysis: sparsity tables (CSV/Markdown), per-layer MACs, sparsity bar chart.

Plain PyTorch + matplotlib (imported lazily by :mod:`.plots`).
"""

from framework.analysis.macs import MacsRow, macs_table
from framework.analysis.plots import plot_layer_sparsity
from framework.analysis.sparsity import SparsityRow, sparsity_table, to_markdown, write_csv, write_markdown

__all__ = [
    "MacsRow",
    "SparsityRow",
    "macs_table",
    "plot_layer_sparsity",
    "sparsity_table",
    "to_markdown",
    "write_csv",
    "write_markdown",
]
