"""Causal language models (Hugging Face transformers): built from a config, or loaded pretrained.

:func:`causal_lm` builds a randomly initialised ``...ForCausalLM`` of one of the families in
:data:`FAMILIES` from a handful of sizes named the same way for every family (the table maps them
to each config's own keys). :func:`pretrained_causal_lm` loads a folder written by
``save_pretrained`` or a hub id from the local cache (:mod:`framework.models.hub`).

Both return the transformers model itself: ``model(input_ids).logits`` is ``[batch, tokens,
vocab]``, ``save_pretrained`` writes the deployable folder, and the pruners of
:mod:`framework.pruning.llm` read its config and module names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from framework.errors import ConfigError
from framework.models.hub import load_causal_lm, require_transformers


@dataclass(frozen=True)
class Family:
    """How one transformers family spells our sizes (None: the family has no such size)."""

    config_class: str
    keys: dict[str, str | None]
    fixed: dict[str, Any] = field(default_factory=dict)  # settings every tiny model of the family gets


_DECODER_KEYS = {
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "num_kv_heads": "num_key_value_heads",
    "intermediate_size": "intermediate_size",
    "max_positions": "max_position_embeddings",
    "vocab_size": "vocab_size",
    "num_experts": None,
    "experts_per_token": None,
}

FAMILIES: dict[str, Family] = {
    # Llama-style: RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention
    "llama": Family("LlamaConfig", _DECODER_KEYS),
    # Qwen2: Llama's layout plus biases on q/k/v
    "qwen2": Family("Qwen2Config", _DECODER_KEYS, {"use_sliding_window": False}),
    # Mixtral-style mixture of experts: Llama attention, a router and num_experts SwiGLU experts per layer
    "mixtral": Family(
        "MixtralConfig",
        {**_DECODER_KEYS, "num_experts": "num_local_experts", "experts_per_token": "num_experts_per_tok"},
        {"sliding_window": None},
    ),
    # GPT-2: LayerNorm, learned positions, GELU MLP, fused qkv (Conv1D), every head its own key/value
    "gpt2": Family(
        "GPT2Config",
        {
            "hidden_size": "n_embd",
            "num_layers": "n_layer",
            "num_heads": "n_head",
            "num_kv_heads": None,
            "intermediate_size": "n_inner",
            "max_positions": "n_positions",
            "vocab_size": "vocab_size",
            "num_experts": None,
            "experts_per_token": None,
        },
        {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
    ),
}


def _positive(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model.{key}={value!r} is invalid; allowed: an integer >= 1")


def _check_sizes(architecture: str, sizes: dict[str, Any]) -> None:
    family = FAMILIES[architecture]
    for key, value in sizes.items():
        if value is None:
            continue
        if family.keys[key] is None:
            raise ConfigError(
                f"model.{key}={value} does not apply to model.architecture={architecture}; set it to null"
            )
        _positive(key, value)
    if sizes["hidden_size"] % sizes["num_heads"]:
        raise ConfigError(
            f"model.hidden_size={sizes['hidden_size']} is not a multiple of model.num_heads={sizes['num_heads']}; "
            "allowed: num_heads dividing hidden_size"
        )
    kv = sizes.get("num_kv_heads")
    if kv is not None and sizes["num_heads"] % kv:
        raise ConfigError(
            f"model.num_kv_heads={kv} does not divide model.num_heads={sizes['num_heads']}; allowed: a divisor "
            "(grouped-query attention shares each key/value head with num_heads / num_kv_heads query heads)"
        )
    experts, per_token = sizes.get("num_experts"), sizes.get("experts_per_token")
    if family.keys["num_experts"] is not None and (experts is None or per_token is None or per_token > experts):
        raise ConfigError(
            f"model.experts_per_token={per_token} with model.num_experts={experts} is invalid for "
            f"model.architecture={architecture}; allowed: 1 <= experts_per_token <= num_experts"
        )


def causal_lm(
    architecture: str = "llama",
    vocab_size: int = 256,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    intermediate_size: int = 344,
    max_positions: int = 512,
    num_experts: int | None = None,
    experts_per_token: int | None = None,
):
    """A randomly initialised causal LM of ``architecture`` (a key of :data:`FAMILIES`).

    ``num_kv_heads``: key/value heads for grouped-query attention (None: one per query head);
    ``num_experts`` / ``experts_per_token``: the mixture of experts (mixtral only).
    """
    if architecture not in FAMILIES:
        raise ConfigError(f"model.architecture={architecture!r} is invalid; allowed: {' | '.join(FAMILIES)}")
    sizes = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_positions=max_positions,
        num_experts=num_experts,
        experts_per_token=experts_per_token,
    )
    _check_sizes(architecture, sizes)
    transformers = require_transformers("model=causal_lm")
    family = FAMILIES[architecture]
    settings: dict[str, Any] = {}
    for key, value in sizes.items():
        name = family.keys[key]
        if value is not None and name is not None:
            settings[name] = value
    if family.keys["num_kv_heads"] is not None:
        settings[family.keys["num_kv_heads"]] = num_kv_heads or num_heads
        # head_dim written out: after heads are pruned, hidden_size / num_heads no longer gives it
        settings["head_dim"] = hidden_size // num_heads
    config = getattr(transformers, family.config_class)(**settings, **family.fixed)
    return transformers.AutoModelForCausalLM.from_config(config)


def pretrained_causal_lm(name: str, dtype: str = "float32"):
    """A causal LM from a ``save_pretrained`` folder or a hub id in the local cache (``HF_HUB_OFFLINE`` /
    ``TRANSFORMERS_OFFLINE`` honoured); ``dtype``: float32 | bfloat16 | float16 | float64."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model.name={name!r} is invalid; allowed: a model folder or a hub id (owner/name)")
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
    if dtype not in dtypes:
        raise ConfigError(f"model.dtype={dtype!r} is invalid; allowed: {' | '.join(dtypes)}")
    return load_causal_lm(name, key="model.name", dtype=dtypes[dtype])


class TokenLogits(nn.Module):
    """A causal LM as the training loop sees a model: ``input_ids [B, T]`` in, next-token logits
    ``[B, T, vocab]`` out (a transformers model returns an output object). ``language_model`` is the
    transformers model itself: what the LLM pruners work on and ``save_pretrained`` writes."""

    def __init__(self, language_model: nn.Module) -> None:
        super().__init__()
        self.language_model = language_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.language_model(input_ids=input_ids, use_cache=False).logits


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every token of the batch (``logits [B, T, V]``,
    ``targets [B, T]``): the loss of a language model, ``exp`` of which is its perplexity."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def is_causal_lm(model: nn.Module) -> bool:
    """A transformers causal LM (a config with a model type, and ``save_pretrained``)."""
    return isinstance(getattr(getattr(model, "config", None), "model_type", None), str) and hasattr(
        model, "save_pretrained"
    )


def save_language_model(model: Any, folder: str | os.PathLike, tokenizer: Any = None) -> Path:
    """``save_pretrained`` of ``model`` (safetensors) and its tokenizer into ``folder``: what
    ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load back. A
    byte-level tokenizer is written as its transformers form."""
    from framework.data.text import ByteTokenizer

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    if isinstance(tokenizer, ByteTokenizer):
        tokenizer = tokenizer.as_pretrained()
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(target)
    return target
