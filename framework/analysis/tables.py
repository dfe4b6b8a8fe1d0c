"""Writing report tables: one CSV writer and one Markdown formatter for every report."""

from __future__ import annotations

import csv
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
