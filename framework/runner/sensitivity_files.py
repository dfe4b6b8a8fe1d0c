"""An earlier analysis' files are checked before a rerun continues from them.

``rows.csv`` and ``analysis.json`` sit in the run folder, where anything can happen to them: an
edit, a copy from another analysis, a folder or a binary file in their place. Rows that are not
what this analysis would have written (a unit the model lacks, a level outside [0, 1), top-1 or
top-5 outside [0, 1] or NaN, a NaN or negative loss, negative counts, the same (unit, level)
twice) are never merged into the results: the file is kept aside as ``rows.csv.rejected`` (nothing
the user produced is deleted), ``rows.csv`` is rewritten with the rows that pass, and the rejected
ones are evaluated again. A path that is not a readable text file is refused with one line.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from framework.analysis import sensitivity as sens

log = logging.getLogger(__name__)


def read_settings(record: Path) -> dict[str, Any] | None:
    """The settings ``analysis.json`` recorded; None when there is none yet; one line otherwise."""
    if not record.exists():
        return None
    if not record.is_file():
        raise sens.SensitivityError(f"{record} is not a file; move it away to start the analysis afresh")
    try:
        settings = json.loads(record.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise sens.SensitivityError(
            f"{record} is not the JSON this program writes ({type(error).__name__}); "
            "move it away (and rows.csv beside it) to start the analysis afresh"
        ) from None
    if not isinstance(settings, dict):
        kind = type(settings).__name__
        raise sens.SensitivityError(f"{record} holds a {kind}; expected the analysis' settings mapping")
    return settings


def _problem(row: sens.Row, units: set[str]) -> str | None:
    if row.unit != sens.DENSE and row.unit not in units:
        return f"unit {row.unit!r} is not in the model"
    if not (0.0 <= row.level < 1.0) or (row.unit == sens.DENSE and row.level != 0.0):
        return f"level {row.level!r}"
    for name in ("top1", "top5"):
        value = getattr(row, name)
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            return f"{name}={value!r}"
    if math.isnan(row.loss) or row.loss < 0 or math.isinf(row.loss):
        return f"loss={row.loss!r}"
    if min(row.pruned_weights, row.pruned_params, row.pruned_macs) < 0:
        return "a negative count"
    return None


def trusted_rows(path: Path, unit_names: Iterable[str]) -> list[sens.Row]:
    """The rows of ``path`` this analysis can keep; untrusted ones are set aside and evaluated again."""
    if path.exists() and not path.is_file():
        raise sens.SensitivityError(f"{path} is not a file; move it away to continue the analysis")
    if path.is_file():
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise sens.SensitivityError(
                f"{path} is not a text CSV written by this program; move it away to continue the analysis"
            ) from None
        header = text.split("\n", 1)[0].strip()
        if text and header != ",".join(sens.COLUMNS):
            raise sens.SensitivityError(
                f"{path} starts with {header[:80]!r}, not the rows CSV header {','.join(sens.COLUMNS)!r}; "
                "move it away to continue the analysis"
            )
    try:
        rows = sens.read_rows(path)
    except Exception as error:  # csv.Error (a NUL byte...): not a file we wrote
        raise sens.SensitivityError(
            f"{path} cannot be read as the rows CSV ({type(error).__name__}); move it away to continue the analysis"
        ) from None
    units = set(unit_names)
    counts: dict[tuple[str, float], int] = {}
    for row in rows:
        key = (row.unit, round(row.level, 6))
        counts[key] = counts.get(key, 0) + 1
    kept: list[sens.Row] = []
    rejected: list[str] = []  # why each row that is not kept was rejected
    for row in rows:
        problem = _problem(row, units)
        if problem is None and counts[(row.unit, round(row.level, 6))] > 1:
            problem = "the same unit and level twice"
        if problem is None:
            kept.append(row)
        else:
            rejected.append(problem)
    if not rejected:
        return rows
    aside = path.with_name(path.name + ".rejected")
    os.replace(path, aside)
    writer = sens.RowWriter(path)
    try:
        for row in kept:
            writer(row)
    finally:
        writer.close()
    reasons = sorted(set(rejected))
    log.warning(
        "sensitivity: %d row(s) of %s are not trusted (%s) and are evaluated again; the file as it was is kept as %s",
        len(rejected),
        path,
        "; ".join(reasons)[:300],
        aside,
    )
    return kept
