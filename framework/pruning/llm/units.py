"""The units structured pruning removes from a decoder layer, and the weight slices each one owns.

* head: a key/value head with the query heads that share it (grouped-query attention), i.e.
  rows of k/v (and their bias), the group's rows of q, and the group's columns of o;
* ffn: one MLP channel, i.e. a row of gate and up and a column of down (GPT-2: a column of
  ``c_fc`` and a row of ``c_proj``, stored transposed); in a mixture, one channel of one expert;
* expert: one expert of a mixture (its slices of the fused parameters and its router row).

Zeroing a unit's slices (the masked model) gives exactly the output of the model without it
(the thinned model), except for experts, whose removal also changes which experts the router
picks: the masked form sets their router logits to minus infinity (:mod:`.thin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.llm.anatomy import Family, is_conv1d


@dataclass(frozen=True)
class AttentionLayout:
    """Head counts of one attention module."""

    heads: int
    kv_heads: int
    head_dim: int

    @property
    def group(self) -> int:  # query heads per key/value head
        return self.heads // self.kv_heads


def attention_layout(config, family: Family) -> AttentionLayout:
    heads = int(getattr(config, family.heads_key))
    kv_heads = int(getattr(config, family.kv_heads_key)) if family.kv_heads_key else heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return AttentionLayout(heads, kv_heads, int(head_dim))


def query_rows(layout: AttentionLayout, groups: torch.Tensor) -> torch.Tensor:
    """Row indices of q (and columns of o) owned by key/value ``groups``."""
    heads = (groups.unsqueeze(1) * layout.group + torch.arange(layout.group)).reshape(-1)
    return head_rows(layout, heads)


def head_rows(layout: AttentionLayout, heads: torch.Tensor) -> torch.Tensor:
    """Row indices of ``heads`` in a projection of ``head_dim`` rows per head."""
    return (heads.unsqueeze(1) * layout.head_dim + torch.arange(layout.head_dim)).reshape(-1)


def linear_weight(module: nn.Module) -> torch.Tensor:
    """``[out, in]`` view of a Linear or Conv1D weight."""
    weight: torch.Tensor = module.weight  # type: ignore[assignment]  # Linear / Conv1D
    return weight.t() if is_conv1d(module) else weight


@torch.no_grad()
def select_outputs(module: Any, index: torch.Tensor) -> None:
    """Keep only output features ``index`` of a Linear / Conv1D (weight and bias)."""
    if is_conv1d(module):
        module.weight = nn.Parameter(module.weight[:, index].clone())
        module.nf = len(index)
    else:
        module.weight = nn.Parameter(module.weight[index].clone())
        module.out_features = len(index)
    if getattr(module, "bias", None) is not None:
        module.bias = nn.Parameter(module.bias[index].clone())


@torch.no_grad()
def select_inputs(module: Any, index: torch.Tensor) -> None:
    """Keep only input features ``index`` of a Linear / Conv1D (the bias is per output: kept)."""
    if is_conv1d(module):
        module.weight = nn.Parameter(module.weight[index].clone())
        module.nx = len(index)
    else:
        module.weight = nn.Parameter(module.weight[:, index].clone())
        module.in_features = len(index)


@torch.no_grad()
def zero_outputs(module: Any, index: torch.Tensor) -> None:
    linear_weight(module)[index] = 0.0
    if getattr(module, "bias", None) is not None:
        module.bias[index] = 0.0


@torch.no_grad()
def zero_inputs(module: nn.Module, index: torch.Tensor) -> None:
    linear_weight(module)[:, index] = 0.0


def complement(keep: torch.Tensor, total: int) -> torch.Tensor:
    removed = torch.ones(total, dtype=torch.bool)
    removed[keep] = False
    return removed.nonzero().flatten()


def require(condition: bool, message: str) -> None:
    if not condition:
        raise PruningError(message)
