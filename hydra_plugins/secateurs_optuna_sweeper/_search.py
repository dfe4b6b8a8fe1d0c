"""Hydra's sweep syntax as Optuna distributions.

``key=a,b,c`` / ``choice(a,b,c)``  -> a categorical choice
``range(start, stop[, step])``    -> integers (or floats) on that grid; ``stop`` is excluded, as in Hydra
``interval(low, high)``           -> a float between the bounds
``tag(log, interval(...))``       -> the same, sampled on a log scale
``tag(int, interval(...))``       -> an integer between the bounds (``tag(int, log, ...)`` on a log scale)
``key=value``                     -> a fixed value given to every trial
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


class SearchSpaceError(ValueError):
    """A search-space entry Optuna cannot sample; the message names the key and the value."""


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key -> the value as typed

    def grid(self) -> dict[str, list[Any]]:
        """Every value of each (discrete) parameter, for the grid and brute-force samplers."""
        return {name: grid_values(name, dist) for name, dist in self.distributions.items()}


def parse_search_space(entries: list[str]) -> SearchSpace:
    """``entries``: ``key=value`` strings, the preset's ``params`` first, then the command line's
    (a key given twice keeps its last value)."""
    space = SearchSpace()
    for override in OverridesParser.create().parse_overrides(entries):
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        if override.is_sweep_override():
            space.distributions[key] = _distribution(key, override)
        else:
            space.fixed[key] = override.get_value_element_as_str()
    return space


def _distribution(key: str, override: Override) -> BaseDistribution:
    value = override.value()
    try:
        if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
            return CategoricalDistribution(_choices(key, override))
        if override.is_range_sweep():
            return _range(value.start, value.stop, value.step)
        if override.is_interval_sweep():
            log = "log" in value.tags
            if "int" in value.tags:  # Hydra reads interval bounds as floats; the tag asks for integers
                return IntDistribution(int(value.start), int(value.end), log=log)
            return FloatDistribution(float(value.start), float(value.end), log=log)
    except (ValueError, TypeError) as error:
        raise SearchSpaceError(f"{override.input_line}: {error}") from None
    raise SearchSpaceError(
        f"{override.input_line}: not a search space; allowed: a,b,c | choice(...) | "
        "range(start, stop, step) | interval(low, high) | tag(log, interval(low, high))"
    )


def _choices(key: str, override: Override) -> list[Any]:
    choices = list(override.sweep_iterator(transformer=Transformer.encode))
    if not choices:
        raise SearchSpaceError(f"{override.input_line}: no values to choose from")
    return choices


def _range(start: float, stop: float, step: float) -> BaseDistribution:
    count = int((stop - start) // step) + (1 if (stop - start) % step else 0)
    if count < 1:
        raise ValueError(f"range({start}, {stop}, {step}) holds no value")
    last = start + (count - 1) * step
    if all(isinstance(v, int) for v in (start, stop, step)):
        return IntDistribution(start, last, step=step)
    return FloatDistribution(float(start), float(last), step=float(step))


def grid_values(name: str, dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    step = getattr(dist, "step", None)
    if step is None:
        raise SearchSpaceError(f"{name} is continuous; the grid sampler needs choice(...) or range(...)")
    count = int(round((dist.high - dist.low) / step)) + 1
    return [dist.low + i * step for i in range(count)]


def probe_values(space: SearchSpace) -> list[dict[str, Any]]:
    """A few points that together touch every choice and both ends of every range: composing
    them finds a bad key or option before any trial is asked for."""
    width = max([2] + [len(d.choices) for d in space.distributions.values() if isinstance(d, CategoricalDistribution)])
    points = []
    for i in range(width):
        point = {}
        for name, dist in space.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                point[name] = dist.choices[i % len(dist.choices)]
            else:
                point[name] = dist.low if i % 2 == 0 else dist.high
        points.append(point)
    return points


def as_override(name: str, value: Any) -> str:
    """``name=value`` as Hydra reads it back (strings quoted only where the grammar needs it)."""
    if isinstance(value, bool):
        return f"{name}={str(value).lower()}"
    if isinstance(value, str):
        if re.fullmatch(r"[\w./:+-]+", value):
            return f"{name}={value}"
        return f"{name}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if value is None:
        return f"{name}=null"
    return f"{name}={value!r}" if isinstance(value, float) else f"{name}={value}"
