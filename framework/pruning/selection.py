"""Which parameters get pruned, and to which per-layer target.

Patterns are shell-style globs (:func:`fnmatch.fnmatchcase`, so case-sensitive) matched against
the names of ``model.named_parameters()``. A model wrapped in ``DataParallel`` or
``DistributedDataParallel`` names its parameters ``module.<name>``; every name is therefore
matched both with and without that prefix, so the same config works wrapped and unwrapped.

* ``weights=None`` (or empty) selects every ``weight`` of a Conv*, ConvTranspose* or Linear
  module.
* ``exclude`` removes names from that selection.
* ``levels`` maps patterns to per-layer targets; the first matching pattern wins, unmatched
  parameters get the default target.

A pattern that matches nothing is almost always a typo, so it raises :class:`PruningError`
naming the pattern and the closest parameter names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from torch import nn

from framework.errors import PruningError
from framework.pruning.graph.fx import DATA_PARALLEL_PREFIX
from framework.pruning.spec import FINE, level_problem, raise_first
from framework.pruning.structures import check_structure, is_structurable


@dataclass(frozen=True)
class SelectedParameter:
    """A parameter to prune, with the module that owns it (needed for filter/channel)."""

    name: str
    param: nn.Parameter
    layer: nn.Module
    attribute: str  # the parameter's name inside ``layer`` (e.g. "weight")


def name_variants(name: str) -> tuple[str, ...]:
    """``name`` as written plus its form with the ``module.`` wrapper prefix removed or added."""
    if name.startswith(DATA_PARALLEL_PREFIX):
        return name, name[len(DATA_PARALLEL_PREFIX) :]
    return name, DATA_PARALLEL_PREFIX + name


def matches(name: str, pattern: str) -> bool:
    """True when ``pattern`` matches ``name`` with or without the ``module.`` prefix."""
    return any(fnmatchcase(variant, pattern) for variant in name_variants(name))


def _close_names(pattern: str, names: Sequence[str]) -> str:
    """'closest names: ...' (difflib), or a few example names when nothing is close."""
    close = difflib.get_close_matches(pattern, list(names), n=3, cutoff=0.4)
    if close:
        return "closest names: " + ", ".join(close)
    return "names look like: " + ", ".join(list(names)[:3])


def _as_patterns(value: str | Iterable[str] | None, key: str) -> list[str]:
    """Accept one pattern or a list of them; reject anything else with a one-liner."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    patterns = list(value)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise PruningError(f"{key} must be a list of non-empty glob patterns; got {pattern!r} in {patterns!r}")
    return patterns


def _no_match_error(key: str, pattern: str, names: Sequence[str], among: str) -> PruningError:
    return PruningError(f"{key} pattern {pattern!r} matches none of the {among}; {_close_names(pattern, names)}")


def owners(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Map each parameter name (as in ``named_parameters``) to (owning module, attribute)."""
    found: dict[str, tuple[nn.Module, str]] = {}
    for module_name, module in model.named_modules():
        for attribute, _ in module.named_parameters(recurse=False):
            name = f"{module_name}.{attribute}" if module_name else attribute
            found.setdefault(name, (module, attribute))
    return found


def io_layer_weights(model: nn.Module) -> tuple[str | None, str | None]:
    """Names of the first and last Conv/ConvTranspose/Linear weights in registration order
    (usually the input and output layers, which are often kept dense); None when there are none.

    Registration order is used rather than tracing, so it works for any model; for models that
    register layers out of call order, name the layers explicitly with ``pruner.exclude``.
    """
    owner = owners(model)
    names = [name for name, _ in model.named_parameters() if is_structurable(*owner[name])]
    return (names[0], names[-1]) if names else (None, None)


def select_parameters(
    model: nn.Module,
    structure: str,
    weights: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = (),
) -> list[SelectedParameter]:
    """The parameters to prune, in ``named_parameters`` order.

    Raises :class:`PruningError` for a pattern that matches no parameter, an empty selection,
    or selected parameters that ``structure`` cannot prune.
    """
    check_structure(structure)
    params = dict(model.named_parameters())
    owner = owners(model)
    names = list(params)

    weight_patterns = _as_patterns(weights, "pruner.weights")
    if weight_patterns:
        for pattern in weight_patterns:
            if not any(matches(name, pattern) for name in names):
                raise _no_match_error("pruner.weights", pattern, names, "model parameters")
        chosen = [name for name in names if any(matches(name, p) for p in weight_patterns)]
    else:
        chosen = [name for name in names if is_structurable(*owner[name])]

    # Exclude patterns are checked against every parameter, so excluding something that the
    # selection already left out is harmless, but a misspelt name is still caught.
    for pattern in _as_patterns(exclude, "pruner.exclude"):
        if not any(matches(name, pattern) for name in names):
            raise _no_match_error("pruner.exclude", pattern, names, "model parameters")
        chosen = [name for name in chosen if not matches(name, pattern)]

    if not chosen:
        raise PruningError(
            f"pruner.weights={weight_patterns or 'default'} with pruner.exclude={_as_patterns(exclude, 'pruner.exclude')} "
            "leaves no parameter to prune; select at least one Conv/Linear weight"
        )

    _check_prunable(chosen, params, owner, structure)
    return [SelectedParameter(name, params[name], *owner[name]) for name in chosen]


def _check_prunable(chosen, params, owner, structure: str) -> None:
    not_floating = [name for name in chosen if not params[name].is_floating_point()]
    if not_floating:
        raise PruningError(f"selected parameters {not_floating} are not floating point and cannot be pruned")
    if structure == FINE:
        return
    rejected = [name for name in chosen if not is_structurable(*owner[name])]
    if rejected:
        shown = ", ".join(rejected[:5]) + (f" (+{len(rejected) - 5} more)" if len(rejected) > 5 else "")
        raise PruningError(
            f"pruner.structure={structure} cannot prune {shown}; only Conv/ConvTranspose/Linear weights "
            "can be pruned by filter or channel (narrow pruner.weights or add pruner.exclude)"
        )


def resolve_levels(
    names: Sequence[str],
    default: float,
    levels: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Per-parameter target: the value of the first pattern in ``levels`` that matches the name
    (dict order), else ``default``. Each pattern must match at least one of ``names``."""
    levels = dict(levels or {})
    for pattern, level in levels.items():
        raise_first([level_problem(pattern, level)])
        if not any(matches(name, pattern) for name in names):
            raise _no_match_error("pruner.levels", pattern, names, "pruned parameters")
    resolved = {}
    for name in names:
        resolved[name] = next((float(v) for p, v in levels.items() if matches(name, p)), float(default))
    return resolved
