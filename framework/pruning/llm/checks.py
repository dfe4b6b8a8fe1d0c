"""The rules of an LLM pruning request that need the model (its widths, heads, experts), checked
before any data is read; each mistake is one line naming the layer or the count at fault."""

from __future__ import annotations

import fnmatch

from torch import nn

from framework.errors import PruningError
from framework.pruning.llm.anatomy import config_of, decoder_layers, family_of
from framework.pruning.llm.layerwise import sparsity_for
from framework.pruning.llm.spec import EXPERT, HEAD, NM, STRUCTURED, LLMPruningSpec
from framework.pruning.llm.structured import kept_units, unit_count
from framework.pruning.llm.targets import Target, layer_targets


def all_targets(model: nn.Module) -> list[Target]:
    names = {id(m): n for n, m in model.named_modules()}
    return [t for layer in decoder_layers(model) for t in layer_targets(model, layer, names[id(layer)])]


def _check_patterns(spec: LLMPruningSpec, names: list[str]) -> None:
    for key, patterns in (("exclude", list(spec.exclude)), ("levels", list(spec.levels))):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                example = names[0] if names else "?"
                raise PruningError(
                    f"pruner.{key} pattern {pattern!r} matches no prunable matrix; allowed: glob patterns over "
                    f"names such as {example}"
                )


def _check_nm(spec: LLMPruningSpec, targets: list[Target]) -> None:
    for target in targets:
        if sparsity_for(target.name, spec) is None:
            continue
        width, m = target.weight().shape[1], int(spec.m or 1)
        if width % m:
            raise PruningError(
                f"pruner.structure=nm {spec.n}:{spec.m} cannot block {target.name}: its input width {width} is not a "
                f"multiple of m={spec.m}; exclude it with pruner.exclude=['{target.name}'] or choose an m that divides it"
            )


def _check_structured(model: nn.Module, spec: LLMPruningSpec) -> None:
    family = family_of(model, f"pruner.structure={spec.structure}")
    if spec.structure == HEAD and family.query is None:
        raise PruningError(
            f"pruner.structure=head: the {config_of(model).model_type} config ties the head size to the hidden size "
            "(fused q/k/v), so a model with fewer heads cannot be written; allowed for it: ffn"
        )
    if spec.structure == EXPERT and family.experts is None:
        raise PruningError(
            f"pruner.structure=expert: model_type={config_of(model).model_type} has no experts; allowed: head | ffn"
        )
    total = unit_count(model, family, spec.structure)
    kept = kept_units(model, family, spec)
    unit = {HEAD: "key/value head groups", EXPERT: "experts"}.get(spec.structure, "FFN channels")
    if kept < 1:
        raise PruningError(
            f"pruner.final_sparsity={spec.final_sparsity} would remove all {total} {unit} of every layer; allowed: a sparsity "
            f"below {(total - 0.5) / total:g}"
        )
    if spec.structure == EXPERT:
        per_token = int(getattr(config_of(model), family.experts_per_token_key or ""))
        if kept < per_token:
            raise PruningError(
                f"pruner.final_sparsity={spec.final_sparsity} would keep {kept} of {total} experts per layer, fewer than the "
                f"{per_token} the router picks per token (num_experts_per_tok); allowed: a sparsity of at most "
                f"{(total - per_token) / total:g}"
            )


def check_request(model: nn.Module, spec: LLMPruningSpec) -> None:
    """Raise PruningError (one line) when ``spec`` cannot be applied to ``model``."""
    if spec.structure in STRUCTURED:
        _check_structured(model, spec)
        return
    targets = all_targets(model)
    _check_patterns(spec, [t.name for t in targets])
    if spec.structure == NM:
        _check_nm(spec, targets)
