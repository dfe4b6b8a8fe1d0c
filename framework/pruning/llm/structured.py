"""Structured one-shot pruning of a causal LM: which heads, FFN channels or experts each decoder
layer keeps (a :class:`StructuredPlan`), ranked on calibration data or weights alone.

Scores (higher = kept):

* ``wanda``: a unit's Wanda score summed over the columns of the projection that reads it, i.e.
  ``sum_c ||X_c|| * ||W[:, c]||`` over o's columns for a head group, down's column for an FFN
  channel (the size of what the unit adds to the residual stream on the calibration tokens);
* ``router``: an expert's routed weight summed over the calibration tokens (how much of the
  layer's output the router gives it);
* ``magnitude``: the squared norm of the unit's weight slices; ``random``: seeded.

Every layer keeps the same number of units: a transformers config holds one head count, one
intermediate size and one expert count for all layers, so that is what ``from_pretrained`` can
rebuild. The smallest scores of each layer go.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from framework.pruning.llm.anatomy import Family, config_of, decoder_layers, family_of, fused, submodule
from framework.pruning.llm.layerwise import Batches, capture_layer_inputs, run_layer
from framework.pruning.llm.spec import EXPERT, FFN, HEAD, MAGNITUDE, RANDOM, ROUTER, WANDA, LLMPruningSpec
from framework.pruning.llm.stats import Statistics
from framework.pruning.llm.targets import ExpertTarget, LinearTarget, Target, observe
from framework.pruning.llm.units import attention_layout, head_rows, linear_weight, query_rows
from framework.pruning.rules import round_half_up


@dataclass
class StructuredPlan:
    """Per decoder layer, the sorted indices of the units it keeps: key/value head groups (head),
    channels (ffn; ``[experts, kept]`` in a mixture) or experts (expert)."""

    structure: str
    keep: dict[int, torch.Tensor]


def unit_count(model: nn.Module, family: Family, structure: str) -> int:
    config = config_of(model)
    if structure == HEAD:
        return attention_layout(config, family).kv_heads
    if structure == FFN:
        size = getattr(config, family.intermediate_key or "", None)
        return int(size) if size is not None else 4 * int(config.hidden_size)  # GPT-2's n_inner=None
    return int(getattr(config, family.experts_key or ""))


def kept_units(model: nn.Module, family: Family, spec: LLMPruningSpec) -> int:
    """Units each layer keeps: the removed share rounded half up, as the project's targets are
    (so 3 heads at 50 % lose 2; a sparsity may thus remove every unit: :mod:`.checks` refuses it)."""
    total = unit_count(model, family, spec.structure)
    return total - round_half_up(total * spec.final_sparsity)


def is_mixture(family: Family) -> bool:
    return family.experts is not None


def _reader(layer: nn.Module, family: Family, structure: str, prefix: str) -> list[Target]:
    """The projections whose input columns carry the units (their Wanda statistics rank them)."""
    if structure == HEAD:
        name = f"{family.attention}.{family.output}"
        return [LinearTarget(f"{prefix}.{name}", submodule(layer, name))]
    if is_mixture(family):
        experts = submodule(layer, family.mlp, family.experts)
        count = fused(experts, "down_proj").shape[0]
        return [
            ExpertTarget(f"{prefix}.{family.mlp}.{family.experts}.down_proj[{e}]", experts, "down_proj", e)
            for e in range(count)
        ]
    name = f"{family.mlp}.{family.down}"
    return [LinearTarget(f"{prefix}.{name}", submodule(layer, name))]


def _wanda_scores(config, family: Family, structure: str, stats: Statistics, readers: list[Target]):
    columns = []
    for target in readers:
        weight = target.weight().detach()
        norms = stats.column_norms(target.name, weight.shape[1], weight.device)
        columns.append(norms * weight.float().norm(dim=0).to(norms.dtype))
    if structure == HEAD:
        layout = attention_layout(config, family)
        return torch.stack([columns[0][query_rows(layout, torch.tensor([g]))].sum() for g in range(layout.kv_heads)])
    return torch.stack(columns) if is_mixture(family) else columns[0]


def _magnitude_scores(model: nn.Module, layer: nn.Module, family: Family, structure: str) -> torch.Tensor:
    if structure == HEAD:
        attention = submodule(layer, family.attention)
        layout = attention_layout(config_of(model), family)
        output = linear_weight(submodule(attention, family.output)).detach().float().square()
        scores = []
        for g in range(layout.kv_heads):
            q_rows = query_rows(layout, torch.tensor([g]))
            total = output[:, q_rows].sum()
            if family.query is not None:
                kv_rows = head_rows(layout, torch.tensor([g]))
                total = (
                    total + linear_weight(submodule(attention, family.query)).detach().float()[q_rows].square().sum()
                )
                for name in (family.key, family.value):
                    total = total + linear_weight(submodule(attention, name)).detach().float()[kv_rows].square().sum()
            scores.append(total)
        return torch.stack(scores)
    mlp = submodule(layer, family.mlp)
    if is_mixture(family):
        experts = submodule(mlp, family.experts)
        gate_up, down = fused(experts, "gate_up_proj").detach().float(), fused(experts, "down_proj").detach().float()
        size = down.shape[2]
        per_channel = gate_up[:, :size].square().sum(2) + gate_up[:, size:].square().sum(2) + down.square().sum(1)
        return per_channel if structure == FFN else per_channel.sum(1)
    total = linear_weight(submodule(mlp, family.down)).detach().float().square().sum(0)
    for name in (family.up, family.gate):
        if name is not None:
            total = total + linear_weight(submodule(mlp, name)).detach().float().square().sum(1)
    return total


class _RouterTotals:
    """Routed weight per expert, summed over tokens, from the router's outputs."""

    def __init__(self, experts: int, top_k: int) -> None:
        self.totals = torch.zeros(experts, dtype=torch.float64)
        self.top_k = top_k

    def __call__(self, _module, _args, output) -> None:
        if isinstance(output, tuple) and len(output) == 3:  # transformers 5: (logits, top-k weights, top-k experts)
            weights, chosen = output[1], output[2]
        else:  # a plain router: logits -> softmax -> top-k, renormalised (Mixtral's rule)
            probabilities = torch.softmax(output.float(), dim=-1)
            weights, chosen = probabilities.topk(self.top_k, dim=-1)
            weights = weights / weights.sum(dim=-1, keepdim=True)
        self.totals.index_add_(0, chosen.reshape(-1).cpu(), weights.reshape(-1).double().cpu())


def _data_scores(model, layers, family, spec, samples) -> dict[int, torch.Tensor]:
    """Scores from one pass of the (dense) model over the calibration windows, layer by layer."""
    prefixes = {id(m): n for n, m in model.named_modules()}
    inputs = capture_layer_inputs(model, samples)
    scores = {}
    for index, layer in enumerate(layers):
        if spec.method == ROUTER:
            router = submodule(layer, family.mlp, family.router)
            totals = _RouterTotals(
                unit_count(model, family, EXPERT), int(getattr(config_of(model), family.experts_per_token_key or ""))
            )
            handle = router.register_forward_hook(totals)
            try:
                outputs = run_layer(layer, inputs)
            finally:
                handle.remove()
            scores[index] = totals.totals
        else:
            readers = _reader(layer, family, spec.structure, prefixes[id(layer)])
            stats = Statistics(columns=True, gram=False)
            with observe(readers, stats.feed):
                outputs = run_layer(layer, inputs)
            scores[index] = _wanda_scores(config_of(model), family, spec.structure, stats, readers)
        inputs = outputs
    return scores


def _keep_highest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Sorted indices of the ``count`` highest scores along the last dim (ties: lower index kept)."""
    order = scores.double().argsort(dim=-1, stable=True, descending=True)[..., :count]
    return order.sort(dim=-1).values


@torch.no_grad()
def plan_structured(model: nn.Module, spec: LLMPruningSpec, samples: Batches | None) -> StructuredPlan:
    """Rank every layer's units and keep the same number in each (``spec.structure``: head | ffn | expert)."""
    family = family_of(model, f"pruner.structure={spec.structure}")
    layers = decoder_layers(model)
    kept = kept_units(model, family, spec)
    was_training = model.training
    model.eval()
    if spec.method in (WANDA, ROUTER):
        assert samples is not None, f"pruner.method={spec.method} needs calibration samples"
        scores = _data_scores(model, layers, family, spec, samples)
    elif spec.method == MAGNITUDE:
        scores = {i: _magnitude_scores(model, layer, family, spec.structure) for i, layer in enumerate(layers)}
    else:
        assert spec.method == RANDOM
        generator = torch.Generator().manual_seed(spec.seed)
        shape = _magnitude_scores(model, layers[0], family, spec.structure).shape
        scores = {i: torch.rand(shape, generator=generator) for i in range(len(layers))}
    model.train(was_training)
    return StructuredPlan(spec.structure, {i: _keep_highest(s, kept) for i, s in scores.items()})
