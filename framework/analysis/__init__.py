"""Post-pruning analysis: sparsity tables (CSV/Markdown), per-layer MACs, sparsity bar chart,
and the measured cost of a model (:mod:`.cost`: parameters, MACs, latency, ONNX, file sizes).

Plain PyTorch + matplotlib (imported lazily by :mod:`.plots`) + onnx/onnxruntime (imported lazily
by the ONNX functions of :mod:`.cost`). :func:`write_pruning_reports` writes the reports into one
folder at the end of a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from framework.analysis.cost import (
    MeasurementError,
    cost_report,
    count_macs,
    count_params,
    export_onnx,
    latency_samples,
    macs_by_module,
    measure_latency,
    onnx_latency,
    onnx_latency_samples,
    onnx_session,
    summarize,
)
from framework.analysis.macs import MacsRow, macs_table, macs_to_markdown, write_macs_csv
from framework.analysis.plots import plot_layer_sparsity
from framework.analysis.sparsity import SparsityRow, sparsity_table, to_markdown, write_csv, write_markdown

__all__ = [
    "MacsRow",
    "MeasurementError",
    "cost_report",
    "count_macs",
    "count_params",
    "export_onnx",
    "latency_samples",
    "macs_by_module",
    "measure_latency",
    "onnx_latency",
    "onnx_latency_samples",
    "onnx_session",
    "summarize",
    "SparsityRow",
    "macs_table",
    "macs_to_markdown",
    "plot_layer_sparsity",
    "sparsity_table",
    "to_markdown",
    "write_csv",
    "write_macs_csv",
    "write_markdown",
    "write_pruning_reports",
]


def write_pruning_reports(
    model: nn.Module,
    parameter_names: Sequence[str] | None,
    report_dir: str | Path,
    input_shape: Sequence[int] | None = None,
) -> list[Path]:
    """Write ``sparsity.csv``, ``sparsity.md``, ``sparsity.png`` and, when ``input_shape`` (batch
    dimension included) is given, ``macs.csv`` and ``macs.md`` (MACs per layer as the model stands,
    counted by torch's flop counter: zeroed weights are no saving until the model is thinned) into
    ``report_dir``.

    Returns the written paths.
    """
    report_dir = Path(report_dir)
    rows = sparsity_table(model, parameter_names)
    paths = [
        write_csv(rows, report_dir / "sparsity.csv"),
        write_markdown(rows, report_dir / "sparsity.md"),
        plot_layer_sparsity(rows, report_dir / "sparsity.png"),
    ]
    if input_shape is not None:
        macs = macs_table(model, input_shape)
        paths.append(write_macs_csv(macs, report_dir / "macs.csv"))
        markdown = report_dir / "macs.md"
        markdown.write_text(macs_to_markdown(macs))
        paths.append(markdown)
    return paths
