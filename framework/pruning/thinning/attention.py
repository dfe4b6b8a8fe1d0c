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

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        if self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        length, batch, _ = query.shape
        source = key.shape[0]
        inner = self.num_heads * self.head_dim
        weight, bias = self.in_proj_weight, self.in_proj_bias
        biases = (None, None, None) if bias is None else (bias[:inner], bias[inner : 2 * inner], bias[2 * inner :])
        q = F.linear(query, weight[:inner], biases[0])
        k = F.linear(key, weight[inner : 2 * inner], biases[1])
        v = F.linear(value, weight[2 * inner :], biases[2])

        def heads(t, n):  # [n, batch, inner] -> [batch, heads, n, head_dim]
            return t.reshape(n, batch, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

        q, k, v = heads(q, length), heads(k, source), heads(v, source)
        mask = self._additive_mask(attn_mask, key_padding_mask, is_causal, batch, length, source, q.dtype, q.device)
        scale = float(self.head_dim) ** -0.5
        dropout = self.dropout if self.training else 0.0
        if need_weights:
            scores = torch.matmul(q, k.transpose(-2, -1)) * scale
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            attended = torch.matmul(F.dropout(weights, p=dropout), v)
        else:  # the fused kernel when nobody reads the weights
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale)
        out = attended.permute(2, 0, 1, 3).reshape(length, batch, inner)
        out = self.out_proj(out)
        if self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(dim=1) if average_attn_weights else weights

    def _additive_mask(self, attn_mask, key_padding_mask, is_causal, batch, length, source, dtype, device):
        """The masks of nn.MultiheadAttention (bool: True = not attended; float: added) as one float mask
        broadcastable to ``[batch, heads, length, source]``, or None."""

        def additive(mask):
            if mask.dtype == torch.bool:
                return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(mask, float("-inf"))
            return mask.to(dtype)

        total = None
        if attn_mask is not None:
            total = additive(
                attn_mask.reshape(-1, self.num_heads, length, source) if attn_mask.dim() == 3 else attn_mask
            )
        elif is_causal:
            total = additive(torch.ones(length, source, dtype=torch.bool, device=device).triu(1))
        if key_padding_mask is not None:
            padding = additive(key_padding_mask.reshape(batch, 1, 1, source))
            total = padding if total is None else total + padding
        return total


def thin_multihead(module: nn.MultiheadAttention, num_heads: int) -> None:
    """Turn ``module`` into a :class:`ThinnedMultiheadAttention` with ``num_heads`` heads of its
    current ``head_dim`` (its tensors are resized by the caller)."""
    module.num_heads = int(num_heads)
    module.__class__ = ThinnedMultiheadAttention


# ---------------------------------------------------------------------------------------------
# Swin's shifted-window attention (torchvision.models.swin_transformer.ShiftedWindowAttention)
#
# torchvision's function derives head_dim from the embedding (C // num_heads), so a block that lost
# heads but kept its embedding needs a forward that takes head_dim on its own. torchvision is not
# imported here (pruning imports only torch): the thinned class is made from the module's own class.

_THINNED_WINDOW_CLASSES: dict[type, type] = {}


def _region_mask(height: int, width: int, window: tuple[int, int], shift: list[int], device) -> torch.Tensor:
    """-100 between tokens of one window that came from different regions of the cyclic shift."""

    def bands(size, win, step):
        index = torch.arange(size, device=device)
        return (index >= size - win).long() + (index >= size - step).long()

    labels = bands(height, window[0], shift[0])[:, None] * 3 + bands(width, window[1], shift[1])[None, :]
    labels = labels.view(height // window[0], window[0], width // window[1], window[1]).permute(0, 2, 1, 3)
    labels = labels.reshape(-1, window[0] * window[1])
    different = labels[:, None, :] != labels[:, :, None]
    return torch.zeros(different.shape, device=device).masked_fill(different, -100.0)


def _window_forward(self, x: torch.Tensor) -> torch.Tensor:
    """Shifted-window attention with ``num_heads`` heads of ``head_dim`` features on a ``[B, H, W, C]``
    input (the computation of torchvision's function, with head_dim not tied to C)."""
    batch, height, width, channels = x.shape
    window = tuple(self.window_size)
    x = F.pad(x, (0, 0, 0, (-width) % window[1], 0, (-height) % window[0]))
    padded_h, padded_w = x.shape[1], x.shape[2]
    shift = [0 if window[0] >= padded_h else self.shift_size[0], 0 if window[1] >= padded_w else self.shift_size[1]]
    if sum(shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    rows, cols = padded_h // window[0], padded_w // window[1]
    tokens = window[0] * window[1]
    windows = x.view(batch, rows, window[0], cols, window[1], channels).permute(0, 1, 3, 2, 4, 5)
    windows = windows.reshape(batch * rows * cols, tokens, channels)
    qkv = self.qkv(windows).reshape(windows.shape[0], tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = torch.matmul(q * float(self.head_dim) ** -0.5, k.transpose(-2, -1)) + self.get_relative_position_bias()
    if sum(shift):
        mask = _region_mask(padded_h, padded_w, window, shift, scores.device).to(scores.dtype)
        scores = scores.view(batch, rows * cols, self.num_heads, tokens, tokens) + mask[None, :, None]
        scores = scores.view(-1, self.num_heads, tokens, tokens)
    weights = F.dropout(torch.softmax(scores, dim=-1), p=self.attention_dropout, training=self.training)
    out = torch.matmul(weights, v).transpose(1, 2).reshape(windows.shape[0], tokens, self.num_heads * self.head_dim)
    out = F.dropout(self.proj(out), p=self.dropout, training=self.training)
    out = out.view(batch, rows, cols, window[0], window[1], channels).permute(0, 1, 3, 2, 4, 5)
    out = out.reshape(batch, padded_h, padded_w, channels)
    if sum(shift):
        out = torch.roll(out, shifts=(shift[0], shift[1]), dims=(1, 2))
    return out[:, :height, :width, :].contiguous()


def thin_window_attention(module: nn.Module, num_heads: int, head_dim: int) -> None:
    """Turn a ShiftedWindowAttention into its thinned form: ``num_heads`` heads of ``head_dim``."""
    base = type(module)
    if not base.__name__.startswith("Thinned"):
        if base not in _THINNED_WINDOW_CLASSES:
            _THINNED_WINDOW_CLASSES[base] = type(f"Thinned{base.__name__}", (base,), {"forward": _window_forward})
        module.__class__ = _THINNED_WINDOW_CLASSES[base]
    # plain int attributes of the block; nn.Module's stub types every attribute as Tensor | Module
    module.num_heads = int(num_heads)  # type: ignore[assignment]
    module.head_dim = int(head_dim)  # type: ignore[assignment]
