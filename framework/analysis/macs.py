"""Per-layer MACs table (``macs.csv``, ``macs.md``), counted by torch's flop counter.

The counting is :func:`framework.analysis.cost.macs_by_module` (``FlopCounterMode``; see
:mod:`framework.analysis.cost` for what counts). A masked model's zeros are not savings here: a
zeroed filter costs the same MACs until the model is thinned, so the honest figure for a pruned
network is the thinned model's count (:func:`framework.analysis.cost.cost_report`), not an
estimate per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from framework.analysis.cost import MeasurementError, macs_by_module
from framework.analysis.tables import markdown_table, write_csv_table

TOTAL_LABEL = "total"


@dataclass(frozen=True)
class MacsRow:
    """MACs done by one module itself (or the total) and its share of the total."""

    name: str
    layer_type: str
    macs: int
    share: float


def macs_table(model: nn.Module, input_shape: Sequence[int]) -> list[MacsRow]:
    """MACs of every module that does some, in call order, plus a total row, for one eval forward
    pass on an input of ``input_shape`` (batch dimension included: MACs are for that whole batch,
    so pass a batch of 1 for per-sample numbers). The model's flags and statistics are untouched."""
    shape = tuple(input_shape)
    if len(shape) < 2:
        raise MeasurementError(
            f"input_shape must include the batch dimension, e.g. (1, 3, 32, 32); got {input_shape!r}"
        )
    own = macs_by_module(model, shape[1:], batch_size=shape[0])
    modules = dict(model.named_modules())
    total = sum(own.values())
    rows = [
        MacsRow(
            name or "(root module)",  # MACs of a functional op in the model's own forward
            type(modules[name]).__name__ if name in modules else "",
            macs,
            macs / total if total else 0.0,
        )
        for name, macs in own.items()
    ]
    rows.append(MacsRow(TOTAL_LABEL, "", total, 1.0 if total else 0.0))
    return rows


MACS_COLUMNS = ("name", "layer_type", "macs", "share")


def _macs_record(row: MacsRow) -> tuple:
    return row.name, row.layer_type, row.macs, round(row.share, 4)


def write_macs_csv(rows: Sequence[MacsRow], path: str | Path) -> Path:
    """Write :func:`macs_table` rows as CSV."""
    return write_csv_table(MACS_COLUMNS, (_macs_record(row) for row in rows), path)


def macs_to_markdown(rows: Sequence[MacsRow]) -> str:
    """:func:`macs_table` rows as a Markdown table."""
    return markdown_table(MACS_COLUMNS, (_macs_record(row) for row in rows), text_columns=("name", "layer_type"))
