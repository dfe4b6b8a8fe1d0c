"""Where things are in a Hugging Face causal LM: a table per family, read from the model's config
and module names (``model.config.model_type``), not from a traced graph.

A family says where the decoder layers are, how a layer names its attention projections, its
MLP or mixture of experts, and which config keys hold the sizes that structured pruning changes.
A model outside the table still gets unstructured / N:M pruning: its decoder layers are found as
the one ``ModuleList`` of ``config.num_hidden_layers`` blocks, and every linear inside is pruned.

Only torch is imported: transformers' ``Conv1D`` (GPT-2, weight stored ``[in, out]``) is
recognised by its class name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from framework.errors import PruningError


@dataclass(frozen=True)
class Family:
    """Names inside one decoder layer (dotted paths) and the config keys of the sizes pruning changes."""

    layers: str  # the ModuleList of decoder layers, from the model's root
    attention: str  # the attention module in a layer
    query: str | None  # q/k/v projections in the attention module (None: fused, see fused_qkv)
    key: str | None
    value: str | None
    output: str  # attention output projection
    mlp: str  # the MLP or sparse-MoE block in a layer
    up: str | None  # dense MLP: input projections (gate may be None) and output projection
    gate: str | None
    down: str | None
    heads_key: str  # config keys
    kv_heads_key: str | None
    intermediate_key: str
    fused_qkv: str | None = None
    router: str | None = None  # mixture of experts: router (weight [experts, hidden]) and fused experts
    experts: str | None = None
    experts_key: str | None = None
    experts_per_token_key: str | None = None


_LLAMA = Family(
    layers="model.layers",
    attention="self_attn",
    query="q_proj",
    key="k_proj",
    value="v_proj",
    output="o_proj",
    mlp="mlp",
    up="up_proj",
    gate="gate_proj",
    down="down_proj",
    heads_key="num_attention_heads",
    kv_heads_key="num_key_value_heads",
    intermediate_key="intermediate_size",
)

FAMILIES: dict[str, Family] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "mixtral": Family(
        layers="model.layers",
        attention="self_attn",
        query="q_proj",
        key="k_proj",
        value="v_proj",
        output="o_proj",
        mlp="mlp",
        up=None,
        gate=None,
        down=None,
        heads_key="num_attention_heads",
        kv_heads_key="num_key_value_heads",
        intermediate_key="intermediate_size",
        router="gate",
        experts="experts",
        experts_key="num_local_experts",
        experts_per_token_key="num_experts_per_tok",
    ),
    "gpt2": Family(
        layers="transformer.h",
        attention="attn",
        query=None,
        key=None,
        value=None,
        fused_qkv="c_attn",
        output="c_proj",
        mlp="mlp",
        up="c_fc",
        gate=None,
        down="c_proj",
        heads_key="n_head",
        kv_heads_key=None,
        intermediate_key="n_inner",
    ),
}


def model_type(model: nn.Module) -> str:
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if not isinstance(kind, str):
        raise PruningError(
            f"{type(model).__name__} has no transformers config (model.config.model_type); the LLM pruners take a "
            "Hugging Face causal LM (model=causal_lm or model=pretrained_lm)"
        )
    return kind


def family_of(model: nn.Module, what: str) -> Family:
    """The family of ``model`` for ``what`` (structured pruning needs one); one line when unknown."""
    kind = model_type(model)
    if kind not in FAMILIES:
        raise PruningError(
            f"{what} knows the layouts of {', '.join(sorted(FAMILIES))}; this model is model_type={kind}; "
            "allowed for it: structure=fine or nm"
        )
    return FAMILIES[kind]


def submodule(root: nn.Module, *path: str | None) -> nn.Module:
    """The module at the dotted ``path`` (its parts joined; a family's name must not be None here)."""
    assert all(part is not None for part in path), path
    return root.get_submodule(".".join(part for part in path if part))


def config_of(model: nn.Module) -> Any:
    """The transformers config of ``model`` (untyped: its keys depend on the family)."""
    config: Any = model.config
    return config


def fused(module: nn.Module, name: str) -> torch.Tensor:
    """A fused parameter of a mixture's experts (``gate_up_proj`` / ``down_proj``)."""
    parameter = getattr(module, name)
    assert isinstance(parameter, torch.Tensor)
    return parameter


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers: the family's path, or the one ModuleList of ``num_hidden_layers`` blocks."""
    kind = model_type(model)
    if kind in FAMILIES:
        layers = submodule(model, FAMILIES[kind].layers)
        assert isinstance(layers, nn.ModuleList)
        return layers
    count = getattr(config_of(model), "num_hidden_layers", None)
    found = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == count]
    if len(found) != 1:
        raise PruningError(
            f"cannot tell the decoder layers of model_type={kind} (found {len(found)} lists of "
            f"num_hidden_layers={count} blocks); allowed: {', '.join(sorted(FAMILIES))} or a model with one such list"
        )
    return found[0]


def is_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D: a linear whose weight is stored ``[in, out]``."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_conv1d(module)
