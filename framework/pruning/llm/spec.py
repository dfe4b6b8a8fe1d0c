"""The one-shot LLM pruner's specification: its fields with their defaults, written once, and every
rule about them, each a function returning a problem line (what is wrong, the value given, what is
allowed) or None.

Plain Python without torch, so the configuration check answers before torch is imported; the
rules that need the model (an N:M block that a layer's width cannot hold, a layer left without
heads or experts) are in :mod:`.checks`, run before any data is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from framework.errors import PruningError

MAGNITUDE, WANDA, SPARSEGPT, RANDOM, ROUTER = "magnitude", "wanda", "sparsegpt", "random", "router"
METHODS = (MAGNITUDE, WANDA, SPARSEGPT, RANDOM, ROUTER)
FINE, NM, HEAD, FFN, EXPERT = "fine", "nm", "head", "ffn", "expert"
STRUCTURES = (FINE, NM, HEAD, FFN, EXPERT)
STRUCTURED = (HEAD, FFN, EXPERT)  # whole units removed and thinned
# how each structure may rank its units
METHODS_OF = {
    FINE: (MAGNITUDE, WANDA, SPARSEGPT, RANDOM),
    NM: (MAGNITUDE, WANDA, SPARSEGPT, RANDOM),
    HEAD: (MAGNITUDE, WANDA, RANDOM),
    FFN: (MAGNITUDE, WANDA, RANDOM),
    EXPERT: (ROUTER, MAGNITUDE, RANDOM),
}
DATA_METHODS = (WANDA, SPARSEGPT, ROUTER)  # need calibration samples


@dataclass(frozen=True)
class LLMPruningSpec:
    """What to prune in a causal LM and how (see docs/language_models.md for each field)."""

    # magnitude |w| | wanda |w|*||x|| | sparsegpt (reconstructs) | random | router (experts: routed weight)
    method: str = WANDA
    # fine: single weights | nm: n of every m inputs | head: key/value heads with their query group
    # | ffn: MLP channels | expert: whole experts
    structure: str = FINE
    final_sparsity: float = 0.5  # share removed in each matrix (fine), or of each layer's units (structured)
    n: int | None = None  # N:M: at most n non-zero weights in every m consecutive inputs
    m: int | None = None
    # per-matrix sparsity: {glob pattern over matrix names: sparsity}, the first match wins
    levels: Mapping[str, float] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()  # glob patterns of matrices left dense
    # training batches the calibration pass sees (seeded draw; the papers use 128 windows: 8 x 16)
    calibration_batches: int = 8
    block: int = 128  # SparseGPT: columns reconstructed together
    damping: float = 0.01  # SparseGPT: share of the Hessian's mean diagonal added to it
    seed: int = 0  # random scores

    def problems(self) -> list[str]:
        """Every problem of this specification, one line each (the rules below, in order)."""
        return spec_problems(self)


FIELD_NAMES = tuple(f.name for f in fields(LLMPruningSpec))


def nm_pattern(spec: LLMPruningSpec) -> tuple[int, int] | None:
    """``(n, m)`` for structure=nm (checked by the rules), else None."""
    if spec.structure != NM or spec.n is None or spec.m is None:
        return None
    return spec.n, spec.m


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _sparsity_problem(key: str, value: Any) -> str | None:
    if not _is_number(value) or not 0.0 <= value < 1.0:
        return f"{key}={value!r} is invalid; allowed: a number in [0, 1)"
    return None


def method_problem(spec: LLMPruningSpec) -> str | None:
    if spec.method not in METHODS:
        return f"pruner.method={spec.method!r} is invalid; allowed: {' | '.join(METHODS)}"
    if spec.structure not in STRUCTURES:
        return f"pruner.structure={spec.structure!r} is invalid; allowed: {' | '.join(STRUCTURES)}"
    allowed = METHODS_OF[spec.structure]
    if spec.method not in allowed:
        return f"pruner.method={spec.method} does not rank pruner.structure={spec.structure}; allowed: {' | '.join(allowed)}"
    return None


def sparsity_problem(spec: LLMPruningSpec) -> str | None:
    problem = _sparsity_problem("pruner.final_sparsity", spec.final_sparsity)
    if problem:
        return problem
    if not isinstance(spec.levels, Mapping):
        return f"pruner.levels={spec.levels!r} is invalid; allowed: a mapping of name patterns to sparsities"
    for pattern, value in spec.levels.items():
        problem = _sparsity_problem(f"pruner.levels.{pattern}", value)
        if problem:
            return problem
    if spec.levels and spec.structure in STRUCTURED:
        return (
            f"pruner.levels does not apply to pruner.structure={spec.structure}: a transformers config holds "
            "one size for every layer; set it to {}"
        )
    return None


def nm_problem(spec: LLMPruningSpec) -> str | None:
    if spec.structure != NM:
        if spec.n is not None or spec.m is not None:
            return f"pruner.n / pruner.m apply to pruner.structure=nm only; got structure={spec.structure}; set them to null"
        return None
    n, m = spec.n, spec.m
    if not (isinstance(n, int) and isinstance(m, int) and _is_int(n, 1) and _is_int(m, 2) and n < m):
        return f"pruner.n={n!r}, pruner.m={m!r} is not an N:M pattern; allowed: integers 1 <= n < m (e.g. 2:4, 4:8)"
    expected = (m - n) / m
    if not math.isclose(spec.final_sparsity, expected):
        return f"pruner.final_sparsity={spec.final_sparsity} does not match {n}:{m}, which prunes {expected:g}; set pruner.final_sparsity={expected:g}"
    if spec.levels:
        return "pruner.levels does not apply to pruner.structure=nm (every block keeps n of m); set it to {}"
    if spec.method == SPARSEGPT and spec.block % m:
        return f"pruner.block={spec.block} is not a multiple of pruner.m={m}; allowed: a multiple of m"
    return None


def calibration_problem(spec: LLMPruningSpec) -> str | None:
    if not _is_int(spec.calibration_batches, 0):
        return f"pruner.calibration_batches={spec.calibration_batches!r} is invalid; allowed: an integer >= 0"
    if spec.method in DATA_METHODS and spec.calibration_batches == 0:
        return (
            f"pruner.method={spec.method} ranks with calibration data but pruner.calibration_batches=0; "
            "allowed: calibration_batches >= 1, or pruner.method=magnitude"
        )
    return None


def sparsegpt_problem(spec: LLMPruningSpec) -> str | None:
    if not _is_int(spec.block, 1):
        return f"pruner.block={spec.block!r} is invalid; allowed: an integer >= 1"
    if not _is_number(spec.damping) or not 0.0 < spec.damping <= 1.0:
        return f"pruner.damping={spec.damping!r} is invalid; allowed: a number in (0, 1]"
    return None


def exclude_problem(spec: LLMPruningSpec) -> str | None:
    if isinstance(spec.exclude, str) or not all(isinstance(p, str) and p for p in spec.exclude):
        return f"pruner.exclude={spec.exclude!r} is invalid; allowed: a list of name patterns"
    if not _is_int(spec.seed, 0):
        return f"pruner.seed={spec.seed!r} is invalid; allowed: an integer >= 0"
    return None


RULES = (method_problem, sparsity_problem, nm_problem, calibration_problem, sparsegpt_problem, exclude_problem)


def spec_problems(spec: LLMPruningSpec) -> list[str]:
    """Every problem of ``spec``, in the order the rules are written."""
    return [problem for rule in RULES if (problem := rule(spec)) is not None]


# what a config's pruner node names to select this pruner (conf/pruner/wanda.yaml ...)
TARGET = "framework.pruning.llm.spec.LLMPruningSpec"


def _spec_of(arguments: Mapping[str, Any]) -> tuple[LLMPruningSpec | None, list[str]]:
    """The spec of a config's pruner node (``_target_`` left out), or the lines saying why not."""
    values = {key: value for key, value in arguments.items() if key != "_target_"}
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        return None, [
            f"pruner.{key} is not an argument of the LLM pruner; allowed: {', '.join(FIELD_NAMES)}" for key in unknown
        ]
    if "exclude" in values and not isinstance(values["exclude"], str):
        values["exclude"] = tuple(values["exclude"] or ())
    if values.get("levels") is None and "levels" in values:
        values["levels"] = {}
    spec = LLMPruningSpec(**values)
    return spec, spec_problems(spec)


def node_problems(arguments: Mapping[str, Any]) -> list[str]:
    """Every problem of a config's pruner node, one line each (the configuration check)."""
    return _spec_of(arguments)[1]


def make_spec(arguments: Mapping[str, Any]) -> LLMPruningSpec:
    """A spec from keyword arguments (a config's ``pruner`` node, its ``_target_`` ignored); the
    first problem is one line."""
    spec, problems = _spec_of(arguments)
    if problems or spec is None:
        raise PruningError(problems[0])
    return spec
