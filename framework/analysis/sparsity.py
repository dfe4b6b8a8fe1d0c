"""Per-layer sparsity summary (in the spirit of Distiller's ``weights_sparsity_summary``).

One :class:`SparsityRow` per listed parameter plus a final total row:

* ``nnz_dense``: number of elements; ``nnz_sparse``: number of non-zero elements.
* ``fine_pct``: percentage of zero elements.
* ``filter_pct`` / ``channel_pct``: percentage of filters / channels whose weights are all zero,
  with filters and channels exactly as defined in :mod:`framework.pruning.structures` (grouped
  convs and ConvTranspose included). ``None`` for parameters that have no filters or channels
  (biases, BatchNorm, anything not a Conv/ConvTranspose/Linear weight).
* ``std``: population standard deviation of the weights; ``mean_abs``: mean ``|w|``.

The total row counts all listed parameters together; its filter/channel percentages are over all
filters/channels of the listed structurable weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from framework.analysis.tables import markdown_table, write_csv_table
from framework.errors import PruningError
from framework.pruning.selection import name_variants, owners
from framework.pruning.spec import CHANNEL, FILTER, STRUCTURED
from framework.pruning.structures import is_structurable, to_groups

TOTAL_LABEL = "total (pruned weights)"


@dataclass(frozen=True)
class SparsityRow:
    """One line of the sparsity table (percentages are 0-100)."""

    name: str
    shape: str
    nnz_dense: int
    nnz_sparse: int
    fine_pct: float
    filter_pct: float | None
    channel_pct: float | None
    std: float
    mean_abs: float


def _zero_group_counts(weight: torch.Tensor, structure: str, layer: nn.Module) -> tuple[int, int]:
    """(all-zero groups, groups) of ``weight`` cut by ``structure``."""
    alive = to_groups(weight, structure, layer).ne(0).any(dim=1)
    return int((~alive).sum()), alive.numel()


def _pct(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def _lookup(names: Iterable[str], params: dict[str, nn.Parameter]) -> list[str]:
    """Resolve names given with or without the ``module.`` wrapper prefix."""
    resolved = []
    for name in names:
        found = next((v for v in name_variants(name) if v in params), None)
        if found is None:
            raise PruningError(f"sparsity table: {name!r} is not a parameter of the model")
        resolved.append(found)
    return resolved


@torch.no_grad()
def sparsity_table(
    model: nn.Module, parameter_names: Sequence[str] | None = None, total_label: str = TOTAL_LABEL
) -> list[SparsityRow]:
    """Rows for ``parameter_names`` (default: every Conv/ConvTranspose/Linear weight) plus a total row."""
    params = dict(model.named_parameters())
    owner = owners(model)
    if parameter_names is None:
        parameter_names = [name for name in params if is_structurable(*owner[name])]
    names = _lookup(parameter_names, params)

    rows, flat = [], []
    dense_total, sparse_total = 0, 0
    group_totals = {"filters": [0, 0], "channels": [0, 0]}  # [zero, count] per structure
    for name in names:
        weight = params[name].detach()
        structured = {}
        if is_structurable(*owner[name]) and weight.dim() >= 2:
            for structure in STRUCTURED:
                zero, count = _zero_group_counts(weight, structure, owner[name][0])
                structured[structure] = _pct(zero, count)
                bucket = group_totals["filters" if structure == FILTER else "channels"]
                bucket[0] += zero
                bucket[1] += count
        values = weight.float().reshape(-1)
        flat.append(values)
        nnz = int(torch.count_nonzero(values))
        rows.append(
            SparsityRow(
                name=name,
                shape=str(tuple(weight.shape)),
                nnz_dense=values.numel(),
                nnz_sparse=nnz,
                fine_pct=_pct(values.numel() - nnz, values.numel()) or 0.0,
                filter_pct=structured.get(FILTER),
                channel_pct=structured.get(CHANNEL),
                std=float(values.std(correction=0)) if values.numel() else 0.0,
                mean_abs=float(values.abs().mean()) if values.numel() else 0.0,
            )
        )
        dense_total += values.numel()
        sparse_total += nnz

    everything = torch.cat(flat) if flat else torch.zeros(0)
    rows.append(
        SparsityRow(
            name=total_label,
            shape="",
            nnz_dense=dense_total,
            nnz_sparse=sparse_total,
            fine_pct=_pct(dense_total - sparse_total, dense_total) or 0.0,
            filter_pct=_pct(*group_totals["filters"]),
            channel_pct=_pct(*group_totals["channels"]),
            std=float(everything.std(correction=0)) if everything.numel() else 0.0,
            mean_abs=float(everything.abs().mean()) if everything.numel() else 0.0,
        )
    )
    return rows


COLUMNS = [f.name for f in fields(SparsityRow)]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_csv(rows: Sequence[SparsityRow], path: str | Path) -> Path:
    """Write the table as CSV (empty cells where a value does not apply)."""
    return write_csv_table(COLUMNS, (["" if v is None else v for v in astuple(row)] for row in rows), path)


def to_markdown(rows: Sequence[SparsityRow]) -> str:
    """The table as GitHub-flavoured Markdown ("-" where a value does not apply)."""
    records = ([_cell(v) or "-" for v in astuple(row)] for row in rows)
    return markdown_table(COLUMNS, records, text_columns=("name", "shape"))


def write_markdown(rows: Sequence[SparsityRow], path: str | Path) -> Path:
    """Write :func:`to_markdown` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_markdown(rows))
    return path
