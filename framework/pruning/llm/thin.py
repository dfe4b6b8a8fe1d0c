"""A structured plan applied to a causal LM: masked (the units zeroed, shapes unchanged) or thinned
(the units cut out, the config's sizes rewritten so that ``save_pretrained`` /
``AutoModelForCausalLM.from_pretrained`` rebuild the smaller model).

The two agree exactly (the tests check it in float64): a zeroed head group reads zero values and
its o columns are zero; a zeroed FFN channel gives ``act(0) * 0 = 0`` into a zero column of down
(GPT-2: ``gelu(0) = 0``); a masked expert has zero weights and a router logit of minus infinity,
so the router never picks it and renormalises over the same experts as the thinned router does.

Sizes the config holds: ``num_attention_heads`` / ``num_key_value_heads`` (``head_dim`` written
out, since ``hidden_size / heads`` no longer gives it), the intermediate size (``n_inner`` for
GPT-2), ``num_local_experts``. Every layer keeps the same count (:mod:`.structured`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from framework.pruning.llm.anatomy import Family, config_of, decoder_layers, family_of, fused, submodule
from framework.pruning.llm.spec import EXPERT, FFN, HEAD
from framework.pruning.llm.structured import StructuredPlan, is_mixture, unit_count
from framework.pruning.llm.units import (
    attention_layout,
    complement,
    head_rows,
    query_rows,
    select_inputs,
    select_outputs,
    zero_inputs,
    zero_outputs,
)


def _attention_parts(layer: nn.Module, family: Family) -> tuple[list[nn.Module], nn.Module, nn.Module]:
    """(k and v, q, o) of a layer's attention."""
    kv = [submodule(layer, family.attention, name) for name in (family.key, family.value)]
    return kv, submodule(layer, family.attention, family.query), submodule(layer, family.attention, family.output)


def _mlp_parts(layer: nn.Module, family: Family) -> tuple[list[nn.Module], nn.Module]:
    """(the projections that write the channels: gate and up, or GPT-2's c_fc; the one that reads them)."""
    readers = [submodule(layer, family.mlp, name) for name in (family.gate, family.up) if name is not None]
    return readers, submodule(layer, family.mlp, family.down)


def _experts(layer: nn.Module, family: Family) -> Any:
    """The fused experts module (untyped: its attributes are transformers')."""
    return submodule(layer, family.mlp, family.experts)


# ----------------------------------------------------------------------------- masked form
def _route_without(removed: torch.Tensor):
    """A forward hook on a transformers-5 router (logits, top-k weights, top-k experts): the removed
    experts' logits set to minus infinity and the top-k drawn again (softmax, renormalised)."""

    def hook(module, _args, output):
        logits = output[0].clone()
        logits[..., removed] = float("-inf")
        probabilities = torch.softmax(logits.float(), dim=-1)
        weights, chosen = probabilities.topk(module.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return logits, weights.to(output[1].dtype), chosen

    return hook


def _mask_heads(model: nn.Module, family: Family, layer: nn.Module, keep: torch.Tensor) -> RemovableHandle | None:
    layout = attention_layout(config_of(model), family)
    removed = complement(keep, layout.kv_heads)
    kv, query, output = _attention_parts(layer, family)
    for module in kv:
        zero_outputs(module, head_rows(layout, removed))
    zero_outputs(query, query_rows(layout, removed))
    zero_inputs(output, query_rows(layout, removed))
    return None


def _mask_ffn(model: nn.Module, family: Family, layer: nn.Module, keep: torch.Tensor) -> RemovableHandle | None:
    total = unit_count(model, family, FFN)
    if is_mixture(family):
        experts = _experts(layer, family)
        gate_up, down = fused(experts, "gate_up_proj"), fused(experts, "down_proj")
        for expert, kept in enumerate(keep):
            gone = complement(kept, total)
            gate_up[expert, gone] = 0.0
            gate_up[expert, gone + total] = 0.0
            down[expert, :, gone] = 0.0
        return None
    removed = complement(keep, total)
    writers, reader = _mlp_parts(layer, family)
    for module in writers:
        zero_outputs(module, removed)
    zero_inputs(reader, removed)
    return None


def _mask_experts(model: nn.Module, family: Family, layer: nn.Module, keep: torch.Tensor) -> RemovableHandle | None:
    removed = complement(keep, unit_count(model, family, EXPERT))
    experts = _experts(layer, family)
    fused(experts, "gate_up_proj")[removed] = 0.0
    fused(experts, "down_proj")[removed] = 0.0
    return submodule(layer, family.mlp, family.router).register_forward_hook(_route_without(removed))


MASKERS = {HEAD: _mask_heads, FFN: _mask_ffn, EXPERT: _mask_experts}


@torch.no_grad()
def mask_plan(model: nn.Module, plan: StructuredPlan) -> list[RemovableHandle]:
    """Zero the units the plan removes, in place; returns the router hooks (experts) to remove later."""
    family = family_of(model, f"pruner.structure={plan.structure}")
    handles = [
        MASKERS[plan.structure](model, family, layer, plan.keep[i]) for i, layer in enumerate(decoder_layers(model))
    ]
    return [handle for handle in handles if handle is not None]


# ----------------------------------------------------------------------------- thinned form
def _set_size(model: nn.Module, key: str | None, value: int) -> None:
    assert key is not None
    setattr(config_of(model), key, value)


def _thin_heads(model: nn.Module, family: Family, plan: StructuredPlan) -> None:
    layout = attention_layout(config_of(model), family)
    for index, layer in enumerate(decoder_layers(model)):
        keep = plan.keep[index]
        kv, query, output = _attention_parts(layer, family)
        for module in kv:
            select_outputs(module, head_rows(layout, keep))
        select_outputs(query, query_rows(layout, keep))
        select_inputs(output, query_rows(layout, keep))
    kept = len(plan.keep[0])
    config_of(model).head_dim = layout.head_dim
    _set_size(model, family.heads_key, kept * layout.group)
    if family.kv_heads_key:
        _set_size(model, family.kv_heads_key, kept)


@torch.no_grad()
def _thin_ffn(model: nn.Module, family: Family, plan: StructuredPlan) -> None:
    total = unit_count(model, family, FFN)
    for index, layer in enumerate(decoder_layers(model)):
        keep = plan.keep[index]
        if is_mixture(family):
            experts = _experts(layer, family)
            gate_up, down = fused(experts, "gate_up_proj"), fused(experts, "down_proj")
            rows = torch.cat([keep, keep + total], dim=1)  # gate rows then up rows, per expert
            experts.gate_up_proj = nn.Parameter(torch.stack([gate_up[e, rows[e]] for e in range(len(keep))]))
            experts.down_proj = nn.Parameter(torch.stack([down[e][:, keep[e]] for e in range(len(keep))]))
            experts.intermediate_dim = keep.shape[1]
        else:
            writers, reader = _mlp_parts(layer, family)
            for module in writers:
                select_outputs(module, keep)
            select_inputs(reader, keep)
    _set_size(model, family.intermediate_key, int(plan.keep[0].shape[-1]))


@torch.no_grad()
def _thin_experts(model: nn.Module, family: Family, plan: StructuredPlan) -> None:
    for index, layer in enumerate(decoder_layers(model)):
        keep = plan.keep[index]
        experts = _experts(layer, family)
        for name in ("gate_up_proj", "down_proj"):
            setattr(experts, name, nn.Parameter(fused(experts, name)[keep].clone()))
        experts.num_experts = len(keep)
        router: Any = submodule(layer, family.mlp, family.router)
        router.weight = nn.Parameter(fused(router, "weight")[keep].clone())
        router.num_experts = len(keep)
    _set_size(model, family.experts_key, len(plan.keep[0]))


THINNERS = {HEAD: _thin_heads, FFN: _thin_ffn, EXPERT: _thin_experts}


def thin_plan(model: nn.Module, plan: StructuredPlan) -> nn.Module:
    """Cut the plan's removed units out of ``model`` (in place) and rewrite its config's sizes."""
    family = family_of(model, f"pruner.structure={plan.structure}")
    THINNERS[plan.structure](model, family, plan)
    return model
