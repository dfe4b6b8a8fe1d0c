"""Attention with heads removed: what thinning turns an ``nn.MultiheadAttention`` into.

``nn.MultiheadAttention`` ties its head width to its embedding (``head_dim = embed_dim // num_heads``
and q, k, v are ``embed_dim`` wide), so it cannot lose a head and keep its embedding.
:class:`ThinnedMultiheadAttention` is the same module with that tie cut: q, k and v are
``num_heads * head_dim`` wide (the rows of ``in_proj_weight`` that survived), ``out_proj`` reads that
width and writes ``embed_dim``; the scale stays ``head_dim ** -0.5``. It is a subclass, so code that
checks ``isinstance(m, nn.MultiheadAttention)`` and the parent's calling convention (``(query, key,
value, need_weights=...)`` returning ``(output, weights)``) keep working, and its parameter names are
the parent's, so state dicts load unchanged.

Only packed projections (``_qkv_same_embed_dim``), no ``bias_k``/``add_zero_attn``: the dependency graph
makes heads removable only for those.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ThinnedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose q/k/v width is ``num_heads * head_dim`` (see the module docstring)."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        length, batch, _ = query.shape
        source = key.shape[0]
        inner = self.num_heads * self.head_dim
        weight, bias = self.in_proj_weight, self.in_proj_bias
        biases = (None, None, None) if bias is None else (bias[:inner], bias[inner:2 * inner], bias[2 * inner:])
        q = F.linear(query, weight[:inner], biases[0])
        k = F.linear(key, weight[inner:2 * inner], biases[1])
        v = F.linear(value, weight[2 * inner:], biases[2])

        def heads(t, n):  # [n, batch, inner] -> [batch, heads, n, head_dim]
            return t.reshape(n, batch, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

        q, k, v = heads(q, length), heads(k, source), heads(v, source)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (float(self.head_dim) ** -0.5)
        if attn_mask is not None:
            mask = attn_mask.reshape(-1, self.num_heads, length, source) if attn_mask.dim() == 3 else attn_mask
            scores = scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        if is_causal and attn_mask is None:
            causal = torch.ones(length, source, dtype=torch.bool, device=scores.device).triu(1)
            scores = scores.masked_fill(causal, float("-inf"))
        if key_padding_mask is not None:
            padding = key_padding_mask.reshape(batch, 1, 1, source)
            scores = (scores.masked_fill(padding, float("-inf")) if padding.dtype == torch.bool
                      else scores + padding)
        weights = torch.softmax(scores, dim=-1)
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        out = torch.matmul(weights, v).permute(2, 0, 1, 3).reshape(length, batch, inner)
        out = self.out_proj(out)
        if self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(dim=1) if average_attn_weights else weights


def thin_multihead(module: nn.MultiheadAttention, num_heads: int) -> None:
    """Turn ``module`` into a :class:`ThinnedMultiheadAttention` with ``num_heads`` heads of its
    current ``head_dim`` (its tensors are resized by the caller)."""
    module.num_heads = int(num_heads)
    module.__class__ = ThinnedMultiheadAttention
