"""Attention: the handlers that make whole heads removable units.

* ``F.scaled_dot_product_attention(q, k, v)`` on ``[..., H, L, E]`` tensors whose channels span
  the head and feature dims: head ``h`` of q, k and v and the output's head ``h`` become one unit
  (a removable *head*; head_dim positions are not removed alone: the default scale reads E). With
  ``enable_gqa`` (fewer key/value heads), key/value head ``j`` and its query heads
  ``j·g .. j·g+g-1`` are one unit, so the grouping survives thinning. A per-head attention mask
  whose head dim carries channels (a relative-position bias gathered from a ``[positions, heads]``
  parameter, timm's Swin and MaxViT) joins the heads: head ``h`` owns its column of the table;
  any other per-head mask keeps every head.
* ``q @ k.transpose(-2, -1)`` and ``scores @ v`` on such views: the same head units; a constant
  (a causal mask buffer) broadcast along the heads does not touch them.
* ``nn.MultiheadAttention`` (self-attention with packed ``in_proj``): head ``h`` is one unit made of
  rows ``h`` of q, k and v in ``in_proj_weight``/``in_proj_bias`` and the head's columns of
  ``out_proj``; its embedding width (the residual stream) is kept. Thinning turns the module into
  :class:`framework.pruning.thinning.attention.ThinnedMultiheadAttention` (same class family, fewer heads).
* torchvision's Swin v1 window attention (one wrapped call): heads are units made of their qkv rows,
  proj columns and relative-position-bias table column; the embedding is kept. Swin's patch merging
  repeats the channels four times along the last dim.

Each handler returns True when it handled the node (see :mod:`.ops`).
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from framework.pruning.graph.channels import Channels
from framework.pruning.graph.fx import is_window_attention
from framework.pruning.graph.groups import HEAD_REASON, IN, OUT, PARAM, WINDOW_REASON
from framework.pruning.graph.state import BuilderState, argument


def _unite_head(state: BuilderState, ids: list[int]) -> None:
    for other in ids[1:]:
        state.uf.union(ids[0], other)
    state.head_ids.append(ids[0])


def scaled_dot_product(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    q, k, v = (state.values.get(argument(node, i, n)) for i, n in enumerate(("query", "key", "value")))
    if not (isinstance(q, Channels) and isinstance(k, Channels) and isinstance(v, Channels)):
        return False
    if not isinstance(meta, TensorMetadata) or not isinstance(first, Channels):
        return False
    if len(q.shape) < 3 or any(t.axes != (len(t.shape) - 3, len(t.shape) - 1) for t in (q, k, v)):
        return False
    hq, hk = q.shape[-3], k.shape[-3]
    mask_heads = _per_head_mask(state, argument(node, 3, "attn_mask"), hq)
    if mask_heads is None:
        return False
    if v.shape[-3] != hk or hq % hk:
        return False
    if hq != hk and not argument(node, 7, "enable_gqa", False):
        return False
    group = hq // hk
    qg, kg, vg = q.grid(), k.grid(), v.grid()
    for h in range(hq):
        bias = [mask_heads[h]] if mask_heads else []
        _unite_head(state, qg[h].tolist() + kg[h // group].tolist() + vg[h // group].tolist() + bias)
    out = torch.stack([vg[h // group] for h in range(hq)])
    shape = tuple(meta.shape)
    state.values[node] = Channels(out.flatten().tolist(), len(shape) - 3, shape, (len(shape) - 3, len(shape) - 1))
    return True


def _per_head_mask(state: BuilderState, mask: Any, heads: int) -> list[int] | None:
    """The channel id of each head of an attention mask/bias: an empty list for no mask or one shared by the
    heads (size 1 on the head dim), the ids when its channels are its head dim (a per-head bias
    table, followed from the parameter), None otherwise (the head count is fixed in it)."""
    meta = mask.meta.get("tensor_meta") if isinstance(mask, torch.fx.Node) else None
    if meta is None or len(meta.shape) < 3 or meta.shape[-3] == 1:
        return []
    channels = state.values.get(mask)
    head_dim = len(meta.shape) - 3
    if not isinstance(channels, Channels) or channels.axes != (head_dim,) or len(channels.ids) != heads:
        return None
    return list(channels.ids)


def matmul(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """Attention written with matmul on ``[..., H, L, E]`` views: ``q @ k.transpose(-2, -1)`` (head h
    of q and k one unit; the scores keep the head dim) and ``scores @ v`` (head h of the scores
    and of v one unit; the output has v's channels). Other products of channels are not followed."""
    a = first
    b = state.values.get(argument(node, 1, "other"))
    if not isinstance(a, Channels) or not isinstance(b, Channels) or not isinstance(meta, TensorMetadata):
        return False
    nd = len(a.shape)
    if len(b.shape) != nd or nd < 3 or a.shape[nd - 3] != b.shape[nd - 3]:
        return False
    heads, shape = a.shape[nd - 3], tuple(meta.shape)
    ag, bg = a.grid(), b.grid()
    if a.axes == (nd - 3, nd - 1) and b.axes == (nd - 3, nd - 2):  # scores = q @ k^T
        for h in range(heads):
            _unite_head(state, ag[h].tolist() + bg[h].tolist())
        state.values[node] = Channels([int(ag[h, 0]) for h in range(heads)], nd - 3, shape)
        return True
    if a.axes == (nd - 3,) and b.axes == (nd - 3, nd - 1):  # out = scores @ v
        for h in range(heads):
            for other in bg[h].tolist():
                state.uf.union(int(ag[h]), other)
        state.values[node] = Channels(b.ids, nd - 3, shape, b.axes)
        return True
    return False


def _packed(module: nn.MultiheadAttention) -> bool:
    return bool(
        module._qkv_same_embed_dim
        and module.in_proj_weight is not None
        and module.bias_k is None
        and not module.add_zero_attn
    )


def multihead(state: BuilderState, node: torch.fx.Node, module: nn.Module, inputs: list[Channels], meta: Any) -> bool:
    """Packed self- or cross-attention: heads are units, the embedding is kept."""
    if not isinstance(module, nn.MultiheadAttention):
        return False
    op = state.describe(node)
    for i, n in enumerate(("query", "key", "value")):
        channels = state.values.get(argument(node, i, n))
        if isinstance(channels, Channels):
            state.fix(channels.ids, op, HEAD_REASON, False)
    masks = [argument(node, 3, "key_padding_mask"), argument(node, 5, "attn_mask")]
    first = meta[0] if isinstance(meta, (tuple, list)) else None
    if not isinstance(first, TensorMetadata):
        return False
    out = state.fresh(first, len(first.shape) - 1)
    state.fix(out.ids, op, HEAD_REASON, False)
    state.values[node] = [out, None]
    # the attention weights, when read, are per head or averaged over the heads: removing a head changes them
    weights_read = any(
        u.op == "call_function" and u.target is operator.getitem and u.args[1] == 1 and u.users for u in node.users
    )
    if not _packed(module) or weights_read or any(isinstance(m, torch.fx.Node) for m in masks):
        return True  # heads stay: a per-head mask, separate projections or read weights are not handled
    heads, width = module.num_heads, module.embed_dim
    head_dim = width // heads
    units = state.uf.new(heads)
    state.head_ids.extend(units)
    rows = [units[(r % width) // head_dim] for r in range(3 * width)]
    state.attach(rows, f"{node.target}.in_proj_weight", PARAM)
    state.param_dims[f"{node.target}.in_proj_weight"] = 0
    if module.in_proj_bias is not None:
        state.attach(rows, f"{node.target}.in_proj_bias", PARAM)
        state.param_dims[f"{node.target}.in_proj_bias"] = 0
    state.attach([units[c // head_dim] for c in range(width)], f"{node.target}.out_proj", IN)
    return True


def window_attention(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """torchvision's Swin attention (one wrapped call): heads of a v1 block are units made of their
    qkv rows, proj columns and relative-position-bias table column; the embedding is kept."""
    qkv = argument(node, 1, "qkv_weight")
    if (
        not isinstance(first, Channels)
        or not isinstance(meta, TensorMetadata)
        or not isinstance(qkv, torch.fx.Node)
        or qkv.op != "get_attr"
        or not str(qkv.target).endswith(".qkv.weight")
    ):
        return False
    owner = str(qkv.target)[: -len(".qkv.weight")]
    module = state.modules.get(owner)
    op = state.describe(node)
    state.fix(first.ids, op, WINDOW_REASON, False)
    out = state.fresh(meta, len(meta.shape) - 1)
    state.fix(out.ids, op, WINDOW_REASON, False)
    state.values[node] = out
    if module is None or not is_window_attention(module) or argument(node, 11, "logit_scale") is not None:
        return True  # v2 reads its per-head bias through a view with the head count fixed: heads stay
    qkv_layer, proj, heads = module.qkv, module.proj, module.num_heads
    if not (isinstance(qkv_layer, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int)):
        return True
    width = qkv_layer.in_features
    if qkv_layer.out_features != 3 * width or proj.in_features != width or width % heads:
        return True
    head_dim = width // heads
    units = state.uf.new(heads)
    state.head_ids.extend(units)
    state.attach([units[(r % width) // head_dim] for r in range(3 * width)], f"{owner}.qkv", OUT)
    state.attach([units[c // head_dim] for c in range(width)], f"{owner}.proj", IN)
    table = f"{owner}.relative_position_bias_table"
    state.attach(units, table, PARAM)
    state.param_dims[table] = 1
    return True


def patch_merging(state: BuilderState, node: torch.fx.Node, first: Any, meta: Any) -> bool:
    """Swin's patch merging pads H and W to even sizes and concatenates the four 2x2 phases along
    the channels: the channel ids repeat four times."""
    if not (
        isinstance(first, Channels)
        and isinstance(meta, TensorMetadata)
        and not first.multi
        and first.dim == len(first.shape) - 1
        and meta.shape[-1] == 4 * len(first.ids)
    ):
        return False
    state.values[node] = Channels(first.ids * 4, len(meta.shape) - 1, tuple(meta.shape))
    return True
