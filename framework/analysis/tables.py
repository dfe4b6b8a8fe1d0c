"""Writing report tables: one CSV writer, one Markdown formatter and one way to print a figure."""

from __future__ import annotations

import csv
import math
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path


def write_csv_table(columns: Sequence[str], records: Iterable[Sequence], path: str | Path) -> Path:
    """Write ``records`` under a ``columns`` header as CSV, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(records)
    return path


def markdown_table(columns: Sequence[str], records: Iterable[Sequence], text_columns: Collection[str]) -> str:
    """A GitHub-flavoured Markdown table; columns not in ``text_columns`` are right-aligned."""
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" if c in text_columns else "---:" for c in columns) + "|"
    body = ["| " + " | ".join(str(v) for v in record) + " |" for record in records]
    return "\n".join([header, rule, *body]) + "\n"


# Metrics that count things (MACs, parameters): read as 1.2M, not 1200000.0000.
COUNT_METRIC_WORDS = ("macs", "params")


def is_count_metric(name: str) -> bool:
    return any(word in name.lower() for word in COUNT_METRIC_WORDS)


def human_count(count: float) -> str:
    """``599680`` -> ``599.68k``; ``1.2e9`` -> ``1.20G``; below a thousand, the integer."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.2f}{unit}"
    return f"{count:.0f}"


def metric_text(value: float, name: str = "") -> str:
    """A metric as a person reads it: counts (by name, or any value from 10,000 up, as an
    objective without its name can be) in human units, rates and losses with four decimals."""
    counted = is_count_metric(name) or abs(value) >= 1e4
    if counted and math.isfinite(value):
        return human_count(value)
    return f"{value:.4f}"
