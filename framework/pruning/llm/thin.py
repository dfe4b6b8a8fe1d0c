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

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from framework.pruning.llm.anatomy import Family, decoder_layers, family_of
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


def _attention_parts(layer: nn.Module, family: Family) -> tuple[nn.Module, list[nn.Module], nn.Module, nn.Module]:
    attention = layer.get_submodule(family.attention)
    kv = [attention.get_submodule(name) for name in (family.key, family.value) if name is not None]
    return attention, kv, attention.get_submodule(family.query or ""), attention.get_submodule(family.output)


def _mlp_parts(layer: nn.Module, family: Family) -> tuple[list[nn.Module], nn.Module]:
    mlp = layer.get_submodule(family.mlp)
    readers = [mlp.get_submodule(name) for name in (family.gate, family.up) if name is not None]
    return readers, mlp.get_submodule(family.down or "")


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


@torch.no_grad()
def mask_plan(model: nn.Module, plan: StructuredPlan) -> list[RemovableHandle]:
    """Zero the units the plan removes, in place; returns the router hooks (experts) to remove later."""
    family = family_of(model, f"pruner.structure={plan.structure}")
    total = unit_count(model, family, plan.structure)
    handles = []
    for index, layer in enumerate(decoder_layers(model)):
        removed = complement(plan.keep[index], total) if plan.keep[index].dim() == 1 else None
        if plan.structure == HEAD:
            layout = attention_layout(model.config, family)
            _, kv, query, output = _attention_parts(layer, family)
            for module in kv:
                zero_outputs(module, head_rows(layout, removed))
            zero_outputs(query, query_rows(layout, removed))
            zero_inputs(output, query_rows(layout, removed))
        elif plan.structure == FFN and is_mixture(family):
            experts = layer.get_submodule(f"{family.mlp}.{family.experts}")
            for expert, keep in enumerate(plan.keep[index]):
                gone = complement(keep, total)
                experts.gate_up_proj[expert, gone] = 0.0
                experts.gate_up_proj[expert, gone + total] = 0.0
                experts.down_proj[expert, :, gone] = 0.0
        elif plan.structure == FFN:
            readers, down = _mlp_parts(layer, family)
            for module in readers:
                zero_outputs(module, removed)
            zero_inputs(down, removed)
        else:
            assert plan.structure == EXPERT
            experts = layer.get_submodule(f"{family.mlp}.{family.experts}")
            experts.gate_up_proj[removed] = 0.0
            experts.down_proj[removed] = 0.0
            router = layer.get_submodule(f"{family.mlp}.{family.router}")
            handles.append(router.register_forward_hook(_route_without(removed)))
    return handles


# ----------------------------------------------------------------------------- thinned form
def _thin_heads(model: nn.Module, family: Family, plan: StructuredPlan) -> None:
    layout = attention_layout(model.config, family)
    for index, layer in enumerate(decoder_layers(model)):
        keep = plan.keep[index]
        _, kv, query, output = _attention_parts(layer, family)
        for module in kv:
            select_outputs(module, head_rows(layout, keep))
        select_outputs(query, query_rows(layout, keep))
        select_inputs(output, query_rows(layout, keep))
    kept = len(plan.keep[0])
    model.config.head_dim = layout.head_dim
    setattr(model.config, family.heads_key, kept * layout.group)
    if family.kv_heads_key:
        setattr(model.config, family.kv_heads_key, kept)


@torch.no_grad()
def _thin_ffn(model: nn.Module, family: Family, plan: StructuredPlan) -> None:
    total = unit_count(model, family, FFN)
    for index, layer in enumerate(decoder_layers(model)):
        keep = plan.keep[index]
        if is_mixture(family):
            experts = layer.get_submodule(f"{family.mlp}.{family.experts}")
            rows = torch.cat([keep, keep + total], dim=1)  # gate rows then up rows, per expert
            gate_up = torch.stack([experts.gate_up_proj[e, rows[e]] for e in range(len(keep))])
            down = torch.stack([experts.down_proj[e][:, keep[e]] for e in range(len(keep))])
            experts.gate_up_proj = nn.Parameter(gate_up)
            experts.down_proj = nn.Parameter(down)
            experts.intermediate_dim = keep.shape[1]
        else:
            readers, down_module = _mlp_parts(layer, family)
            for module in readers:
                select_outputs(module, keep)
            select_inputs(down_module, keep)
    setattr(model.config, family.intermediate_key, int(plan.keep[0].shape[-1]))


@torch.no_grad()
def _thin_experts(model: nn.Module, family: Family, plan: StructuredPlan) -> None:
    for index, layer in enumerate(decoder_layers(model)):
        keep = plan.keep[index]
        experts = layer.get_submodule(f"{family.mlp}.{family.experts}")
        experts.gate_up_proj = nn.Parameter(experts.gate_up_proj[keep].clone())
        experts.down_proj = nn.Parameter(experts.down_proj[keep].clone())
        experts.num_experts = len(keep)
        router = layer.get_submodule(f"{family.mlp}.{family.router}")
        router.weight = nn.Parameter(router.weight[keep].clone())
        router.num_experts = len(keep)
    setattr(model.config, family.experts_key, len(plan.keep[0]))


THINNERS = {HEAD: _thin_heads, FFN: _thin_ffn, EXPERT: _thin_experts}


def thin_plan(model: nn.Module, plan: StructuredPlan) -> nn.Module:
    """Cut the plan's removed units out of ``model`` (in place) and rewrite its config's sizes."""
    family = family_of(model, f"pruner.structure={plan.structure}")
    THINNERS[plan.structure](model, family, plan)
    return model
