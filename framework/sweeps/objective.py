"""The value a job hands to a Hydra sweeper: the final value of ``optimized_metric``.

Optuna's sweeper calls ``float()`` on a job's return value (a list of floats for a multi-objective
study); the basic sweeper ignores it. A metric that the run did not log, or that is not finite, is a
failed trial, never a number that would mislead the search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from framework.analysis.tables import metric_text
from framework.errors import SecateursError


class ObjectiveError(SecateursError):
    """``optimized_metric`` names a metric the run did not log or whose value is not finite."""


def metric_names(optimized_metric: Any) -> list[str]:
    """``"val/top1"`` -> ``["val/top1"]``; a list (from YAML or the command line) stays a list."""
    if isinstance(optimized_metric, str):
        return [optimized_metric]
    return [str(name) for name in optimized_metric]


def objective_value(final_metrics: dict[str, float], optimized_metric: Any) -> float | list[float]:
    """The final value of each optimized metric: a float for one name, a list for several."""
    names = metric_names(optimized_metric)
    values = [_final(final_metrics, name) for name in names]
    return values[0] if isinstance(optimized_metric, str) else values


def _final(final_metrics: dict[str, float], name: str) -> float:
    if name not in final_metrics:
        logged = ", ".join(sorted(final_metrics)) or "none"
        raise ObjectiveError(f"optimized_metric={name!r} was not logged by this run; allowed: {logged}")
    value = float(final_metrics[name])
    if not math.isfinite(value):
        raise ObjectiveError(f"optimized_metric={name!r} ended at {value}, not a finite number")
    return value


def describe(value: float | Sequence[float]) -> str:
    """``0.9123`` or ``[0.9123, 599.68k]`` for a log line."""
    if isinstance(value, (int, float)):
        return metric_text(value)
    return "[" + ", ".join(metric_text(v) for v in value) + "]"
