"""How channels move between tensor dims: permute, reshape, heads and attention.

The dependency builder (:mod:`.dependency`) gives every tensor one channel id per channel. In a
transformer the channels do not stay on one dim: ``permute`` moves them, ``view(B, L, H, hd)`` splits
an embedding into heads × head features, ``scaled_dot_product_attention`` mixes tokens within each
head, ``reshape(B, L, -1)`` merges the heads back. This module holds the handlers for those ops, as a
mixin of the builder, on one representation: the channel ids of a tensor laid out over the dims that
carry channels (``_Channels.axes``), row-major.

Rules (each keeps the thinned model computing what the masked one computes)
--------------------------------------------------------------------------
* ``permute``/``transpose``/``swapaxes``/``movedim``: the channel dims move, ids reordered.
* ``reshape``/``view``/``flatten``/``unflatten`` (and ``nn.Flatten``/``nn.Unflatten``): the ids are
  reshaped with the tensor; the result's channel dims are those along which ids vary. A reshape that
  interleaves channels with another dim so that the ids depend on it (a channel split across tokens)
  is untrackable: its channels are kept, with one warning. A channel dim whose size is written as a
  constant in the code cannot shrink, so every removable unit spans it: ``view(B, L, 4, -1)`` (4
  heads fixed) makes "position j of every head" one unit; ``view(B, L, -1, 16)`` (head_dim fixed)
  makes "head h" one unit. Only one channel dim may shrink (removal must leave a grid): the first
  one given as ``-1`` or computed at run time; the others are spanned too. No shrinkable channel dim
  at all (every size a constant, e.g. ``reshape(n, 768, -1)``): the channels are kept, with a warning.
* Indexing a channel dim with a constant (``qkv[0]`` after ``reshape(B, L, 3, H, hd)``) is allowed
  when every unit spans that dim (so its size never changes); otherwise the channels are kept.
* ``F.scaled_dot_product_attention(q, k, v)`` on ``[..., H, L, E]`` tensors whose channels span
  the head and feature dims: head ``h`` of q, k and v and the output's head ``h`` become one unit
  (a removable *head*; head_dim positions are not removed alone: the default scale reads E). With
  ``enable_gqa`` (fewer key/value heads), key/value head ``j`` and its query heads
  ``j·g .. j·g+g-1`` are one unit, so the grouping survives thinning. A per-head attention mask
  keeps every head.
* ``q @ k.transpose(-2, -1)`` and ``scores @ v`` on such views: the same head units; a constant
  (a causal mask buffer) broadcast along the heads does not touch them.
* ``nn.MultiheadAttention`` (self-attention with packed ``in_proj``): head ``h`` is one unit made of
  rows ``h`` of q, k and v in ``in_proj_weight``/``in_proj_bias`` and the head's columns of
  ``out_proj``; its embedding width (the residual stream) is kept. Thinning turns the module into
  :class:`framework.pruning.thin.attention.ThinnedMultiheadAttention` (same class family, fewer heads).
* ``LayerNorm``/``RMSNorm`` (module or ``F.layer_norm``) over the channel dim: removing a channel
  changes the mean and variance of the others, so thinning could not be exact: the channels are
  kept (silently; the exclusion is listed in the graph). Over other dims it passes channels through.
* ``softmax``/``log_softmax`` over a non-channel dim pass channels through.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

PARAM = "param"
HEAD_REASON = "nn.MultiheadAttention keeps its embedding width (its heads can be removed with pruner.structure=head)"
NORMALISED_REASON = "it normalises over these channels, so removing one would change the others"
FIXED_SIZE_REASON = "its size along the channels is fixed in the code"
WINDOW_REASON = (
    "shifted-window attention keeps its embedding width (the heads of a v1 block can be removed "
    "with pruner.structure=head)"
)
# channels kept for a reason no change to the code around them would remove
STRUCTURAL_REASONS = (NORMALISED_REASON, HEAD_REASON, WINDOW_REASON)
_WINDOW_ATTENTION = ("torchvision.models.swin_transformer", "shifted_window_attention")
# Swin's patch merging: pads H and W to even sizes and concatenates the four 2x2 phases along the channels
_PATCH_MERGING = {("torchvision.models.swin_transformer", "_patch_merging_pad")}
MIXING_REASON = "it mixes the channel dim with another dim in a way that cannot be tracked"

_PERMUTE_METHODS = {"permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis"}
_PERMUTE_FUNCTIONS = {torch.permute, torch.transpose, torch.swapaxes, torch.swapdims, torch.movedim, torch.moveaxis}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "unflatten"}
_RESHAPE_FUNCTIONS = {torch.reshape, torch.flatten, torch.unflatten}
_SOFTMAX = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax}
_NORM_MODULES = tuple(m for m in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) if m is not None)
_NORM_FUNCTIONS = {F.layer_norm} | ({F.rms_norm} if hasattr(F, "rms_norm") else set())


@dataclass
class _Channels:
    """Channel ids of one tensor: ``ids[i]`` is channel ``i`` along dim ``dim`` of a tensor of ``shape``.

    After an embedding is split into heads (``[B, L, H, hd]``) the channels span several dims:
    ``axes`` (increasing) lists them and ``ids`` runs over them in row-major order; ``dim`` is then
    ``axes[0]``. Only the layout handlers below accept such values."""

    ids: list[int]
    dim: int
    shape: tuple[int, ...]
    axes: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.axes:
            self.axes = (self.dim,)

    @property
    def multi(self) -> bool:
        return len(self.axes) > 1

    def grid(self) -> torch.Tensor:
        """The ids as a tensor over ``axes`` (sizes ``shape[a]``)."""
        return torch.tensor(self.ids, dtype=torch.long).reshape([self.shape[a] for a in self.axes])

    def broadcast_grid(self) -> torch.Tensor:
        """The ids as a tensor broadcastable to ``shape`` (size 1 on the other dims)."""
        sizes = [self.shape[d] if d in self.axes else 1 for d in range(len(self.shape))]
        return torch.tensor(self.ids, dtype=torch.long).reshape(sizes)


def channels_from_full(full: torch.Tensor) -> _Channels | None:
    """The channels of a tensor whose every element holds its channel id (``full``): the dims along
    which ids vary; None when the ids depend on a dim in a way that is not a product (mixing)."""
    shape = tuple(full.shape)
    if full.numel() == 0:
        return None
    axes = []
    reduced = full
    for d in range(full.dim()):
        first = reduced.narrow(d, 0, 1)
        if bool((reduced == first).all()):
            reduced = first
        else:
            axes.append(d)
    if not axes or not bool((full == reduced.expand(shape)).all()):
        return None
    ids = reduced.flatten().tolist()
    if len(axes) > 1 and len(set(ids)) != len(ids):
        return None  # a channel spread over several positions of a grid: not a product of dims
    return _Channels(ids, axes[0], shape, tuple(axes))


def _size_is_variable(size: Any) -> bool:
    return size == -1 or isinstance(size, torch.fx.Node)


def _dims(value, ndim: int) -> list[int] | None:
    if isinstance(value, int):
        return [value % ndim]
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
        return [v % ndim for v in value]
    return None


def _arg(node: torch.fx.Node, position: int, name: str, default=None):
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[position] if len(node.args) > position else default


class LayoutHandlers:
    """Mixin of the dependency builder (see the module docstring); uses its ``uf``, ``values``,
    ``fix``, ``attach``, ``unknown``, ``fresh``, ``modules``."""

    # ------------------------------------------------------------------ entry points
    def layout_call(self, node, function, method, first, meta) -> bool | None:
        """Handle a call_function/call_method node whose first argument has channels.
        True: handled; False: known op that cannot be tracked (caller marks it unknown); None: not ours."""
        if function in _PERMUTE_FUNCTIONS or method in _PERMUTE_METHODS:
            return self._permute(node, first, meta, function or method)
        if function in _RESHAPE_FUNCTIONS or method in _RESHAPE_METHODS:
            return self._reshape_any(node, first, meta, function, method)
        if function is operator.getitem and isinstance(meta, TensorMetadata):
            return self._index(node, first, node.args[1], meta)
        if function is torch.unbind or method == "unbind":
            return self._unbind(node, first, meta)
        if function is F.scaled_dot_product_attention:
            return self._attention(node, meta)
        if function in (torch.matmul, operator.matmul) or method == "matmul":
            return self._matmul(node, first, meta)
        foreign = (getattr(function, "__module__", None), getattr(function, "__name__", None))
        if foreign == _WINDOW_ATTENTION:
            return self._window_attention(node, first, meta)
        if (
            foreign in _PATCH_MERGING
            and isinstance(meta, TensorMetadata)
            and not first.multi
            and first.dim == len(first.shape) - 1
            and meta.shape[-1] == 4 * len(first.ids)
        ):
            self.values[node] = _Channels(first.ids * 4, len(meta.shape) - 1, tuple(meta.shape))
            return True
        if function in _SOFTMAX or method in ("softmax", "log_softmax"):
            dim = _arg(node, 1, "dim")
            if isinstance(dim, int) and isinstance(meta, TensorMetadata) and dim % len(first.shape) not in first.axes:
                return self._same_layout(node, first, meta)
            return False
        if function in _NORM_FUNCTIONS:
            shape = _arg(node, 1, "normalized_shape")
            return self._normalise(node, first, meta, len(shape) if isinstance(shape, (tuple, list)) else None)
        return None

    def layout_module(self, node, module, inputs, meta) -> bool | None:
        """Handle a call_module node (None: not ours)."""
        if isinstance(module, _NORM_MODULES) and len(inputs) == 1 and len(node.args) == 1:
            return self._normalise(node, inputs[0], meta, len(module.normalized_shape))
        if isinstance(module, (nn.Flatten, nn.Unflatten)) and len(inputs) == 1:
            return self._reshape_any(node, inputs[0], meta, None, None, module=module)
        if isinstance(module, nn.Softmax) and len(inputs) == 1 and isinstance(meta, TensorMetadata):
            dim = module.dim
            if isinstance(dim, int) and dim % len(inputs[0].shape) not in inputs[0].axes:
                return self._same_layout(node, inputs[0], meta)
            return False
        if isinstance(module, nn.MultiheadAttention):
            return self._multihead(node, module)
        return None

    # ------------------------------------------------------------------ helpers
    def _same_layout(self, node, source: _Channels, meta) -> bool:
        shape = tuple(meta.shape)
        if len(shape) != len(source.shape) or any(shape[a] != source.shape[a] for a in source.axes):
            return False
        self.values[node] = _Channels(source.ids, source.dim, shape, source.axes)
        return True

    def span(self, grid: torch.Tensor, dim: int) -> None:
        """Union the ids along ``dim`` of ``grid`` (every unit then spans that dim)."""
        first = grid.select(dim, 0).flatten().tolist()
        for i in range(1, grid.shape[dim]):
            for a, b in zip(first, grid.select(dim, i).flatten().tolist()):
                self.uf.union(a, b)

    def spans(self, grid: torch.Tensor, dim: int) -> bool:
        """Whether every unit already spans ``dim`` of ``grid``."""
        find = self.uf.find
        first = [find(i) for i in grid.select(dim, 0).flatten().tolist()]
        return all(
            [find(i) for i in grid.select(dim, p).flatten().tolist()] == first for p in range(1, grid.shape[dim])
        )

    # ------------------------------------------------------------------ permute
    def _permute(self, node, source: _Channels, meta, op) -> bool:
        if not isinstance(meta, TensorMetadata):
            return False
        ndim = len(source.shape)
        name = op if isinstance(op, str) else op.__name__
        if name == "permute":
            order = node.args[1:] if node.op == "call_method" else node.args[1:2]
            if len(order) == 1 and isinstance(order[0], (tuple, list)):
                order = order[0]
            order = _dims(list(order), ndim) if order else None
            if order is None and "dims" in node.kwargs:
                order = _dims(node.kwargs["dims"], ndim)
        elif name in ("transpose", "swapaxes", "swapdims"):
            a, b = _arg(node, 1, "dim0"), _arg(node, 2, "dim1")
            if not isinstance(a, int) or not isinstance(b, int):
                return False
            order = list(range(ndim))
            order[a % ndim], order[b % ndim] = order[b % ndim], order[a % ndim]
        else:  # movedim / moveaxis
            src, dst = _dims(_arg(node, 1, "source"), ndim), _dims(_arg(node, 2, "destination"), ndim)
            if src is None or dst is None or len(src) != len(dst):
                return False
            rest = iter(d for d in range(ndim) if d not in src)
            placed = dict(zip(dst, src))
            order = [placed[i] if i in placed else next(rest) for i in range(ndim)]
        if order is None or sorted(order) != list(range(ndim)):
            return False
        new_axes = [order.index(a) for a in source.axes]  # where each channel dim goes
        grid = source.grid().permute(sorted(range(len(new_axes)), key=lambda k: new_axes[k]))
        axes = tuple(sorted(new_axes))
        self.values[node] = _Channels(grid.flatten().tolist(), axes[0], tuple(meta.shape), axes)
        return True

    # ------------------------------------------------------------------ reshape
    def _reshape_any(self, node, source: _Channels, meta, function, method, module=None) -> bool:
        if not isinstance(meta, TensorMetadata):
            return False
        old, shape = source.shape, tuple(meta.shape)
        variable = [True] * len(shape)  # per output dim: may its size change after thinning?
        name = method or getattr(function, "__name__", None)
        if module is not None and isinstance(module, nn.Unflatten):
            dim, sizes = module.dim % len(old), list(module.unflattened_size)
            variable = [True] * dim + [s == -1 for s in sizes] + [True] * (len(old) - dim - 1)
        elif name in ("view", "reshape"):
            sizes = node.args[1:] if node.op == "call_method" else node.args[1:2]
            if "shape" in node.kwargs:
                sizes = (node.kwargs["shape"],)
            if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
                sizes = tuple(sizes[0])
            if len(sizes) != len(shape):
                return False
            variable = [_size_is_variable(s) for s in sizes]
        elif name == "unflatten":
            dim, sizes = _arg(node, 1, "dim"), _arg(node, 2, "sizes")
            if not isinstance(dim, int) or not isinstance(sizes, (tuple, list)):
                return False
            dim %= len(old)
            variable = [True] * dim + [_size_is_variable(s) for s in sizes] + [True] * (len(old) - dim - 1)
        if len(variable) != len(shape):
            return False
        full = source.broadcast_grid().expand(old).reshape(shape)
        result = channels_from_full(full)
        if result is None:
            self.unknown(node, MIXING_REASON)
            return True
        grid = result.grid()
        shrinkable = [k for k, a in enumerate(result.axes) if variable[a]]
        if not shrinkable:  # followed, but none of them can go
            op = self._name(node)
            self.sites[op].append(node.name)
            self.fix(result.ids, op, FIXED_SIZE_REASON, True)
            self.fix(source.ids, op, FIXED_SIZE_REASON, True)
            self.values[node] = result
            return True
        for k in range(len(result.axes)):
            if k != shrinkable[0]:
                self.span(grid, k)
        self.values[node] = result
        return True

    # ------------------------------------------------------------------ indexing
    def _index(self, node, source: _Channels, index, meta) -> bool:
        if not isinstance(index, tuple):
            index = (index,)
        if any(isinstance(i, torch.fx.Node) for i in index):
            return False
        ndim = len(source.shape)
        if Ellipsis in index:
            at = index.index(Ellipsis)
            fill = ndim - (len(index) - 1 - sum(i is None for i in index))
            index = index[:at] + (slice(None),) * fill + index[at + 1 :]
        dim = 0
        grid_index = []
        for entry in index:
            if entry is None:
                grid_index.append(None)
                continue
            if not isinstance(entry, (int, slice)):
                return False
            if dim in source.axes and entry != slice(None):
                k = source.axes.index(dim)
                if not self.spans(source.grid(), k):
                    return False
            grid_index.append(entry)
            dim += 1
        full = source.broadcast_grid().expand(source.shape)[tuple(grid_index)]
        if tuple(full.shape) != tuple(meta.shape):
            return False
        result = channels_from_full(full)
        if result is None:
            return False
        self.values[node] = result
        return True

    def _unbind(self, node, source: _Channels, meta) -> bool:
        dim = _arg(node, 1, "dim", 0)
        if not isinstance(dim, int) or not isinstance(meta, (tuple, list)):
            return False
        dim %= len(source.shape)
        if dim in source.axes and not self.spans(source.grid(), source.axes.index(dim)):
            return False
        full = source.broadcast_grid().expand(source.shape)
        parts = [channels_from_full(full.select(dim, i)) for i in range(full.shape[dim])]
        if any(p is None for p in parts):
            return False
        self.values[node] = parts
        return True

    # ------------------------------------------------------------------ normalisation
    def _normalise(self, node, source: _Channels, meta, count: int | None) -> bool:
        if not isinstance(meta, TensorMetadata) or count is None:
            return False
        ndim = len(source.shape)
        normalised = set(range(ndim - count, ndim))
        self.values[node] = _Channels(source.ids, source.dim, tuple(meta.shape), source.axes)
        if normalised & set(source.axes):
            op = self._name(node)
            self.fix(source.ids, op, NORMALISED_REASON, False)
        return True

    def _name(self, node) -> str:
        if node.op == "call_module":
            return f"{type(self.modules[node.target]).__name__} '{node.target}'"
        if node.op == "call_method":
            return f"method .{node.target}()"
        return f"{getattr(node.target, '__name__', node.target)}()"

    # ------------------------------------------------------------------ attention
    def _attention(self, node, meta) -> bool:
        q, k, v = (self.values.get(_arg(node, i, n)) for i, n in enumerate(("query", "key", "value")))
        if not all(isinstance(t, _Channels) for t in (q, k, v)) or not isinstance(meta, TensorMetadata):
            return False
        nd = len(q.shape)
        if nd < 3 or any(t.axes != (len(t.shape) - 3, len(t.shape) - 1) for t in (q, k, v)):
            return False
        mask = _arg(node, 3, "attn_mask")
        mask_meta = mask.meta.get("tensor_meta") if isinstance(mask, torch.fx.Node) else None
        if mask_meta is not None and len(mask_meta.shape) >= 3 and mask_meta.shape[-3] != 1:
            return False  # one mask per head: the head count is fixed in it
        hq, hk = q.shape[-3], k.shape[-3]
        if v.shape[-3] != hk or hq % hk:
            return False
        if hq != hk and not _arg(node, 7, "enable_gqa", False):
            return False
        group = hq // hk
        qg, kg, vg = q.grid(), k.grid(), v.grid()
        for h in range(hq):
            ids = qg[h].tolist() + kg[h // group].tolist() + vg[h // group].tolist()
            for other in ids[1:]:
                self.uf.union(ids[0], other)
            self.head_ids.append(ids[0])
        out = torch.stack([vg[h // group] for h in range(hq)])
        shape = tuple(meta.shape)
        self.values[node] = _Channels(out.flatten().tolist(), len(shape) - 3, shape, (len(shape) - 3, len(shape) - 1))
        return True

    def _matmul(self, node, a: _Channels, meta) -> bool:
        """Attention written with matmul on ``[..., H, L, E]`` views: ``q @ k.transpose(-2, -1)`` (head h
        of q and k one unit; the scores keep the head dim) and ``scores @ v`` (head h of the scores
        and of v one unit; the output has v's channels). Other products of channels are not followed."""
        b = self.values.get(_arg(node, 1, "other"))
        if not isinstance(b, _Channels) or not isinstance(meta, TensorMetadata) or len(a.shape) != len(b.shape):
            return False
        nd = len(a.shape)
        if nd < 3 or a.shape[nd - 3] != b.shape[nd - 3]:
            return False
        heads, shape = a.shape[nd - 3], tuple(meta.shape)
        ag, bg = a.grid(), b.grid()
        if a.axes == (nd - 3, nd - 1) and b.axes == (nd - 3, nd - 2):  # scores = q @ k^T
            for h in range(heads):
                ids = ag[h].tolist() + bg[h].tolist()
                for other in ids[1:]:
                    self.uf.union(ids[0], other)
                self.head_ids.append(ids[0])
            self.values[node] = _Channels([int(ag[h, 0]) for h in range(heads)], nd - 3, shape)
            return True
        if a.axes == (nd - 3,) and b.axes == (nd - 3, nd - 1):  # out = scores @ v
            for h in range(heads):
                for other in bg[h].tolist():
                    self.uf.union(int(ag[h]), other)
            self.values[node] = _Channels(b.ids, nd - 3, shape, b.axes)
            return True
        return False

    def _multihead(self, node, module: nn.MultiheadAttention) -> bool:
        """Packed self- or cross-attention: heads are units, the embedding is kept."""
        meta = node.meta.get("tensor_meta")
        inputs = [self.values.get(_arg(node, i, n)) for i, n in enumerate(("query", "key", "value"))]
        op = self._name(node)
        for channels in inputs:
            if isinstance(channels, _Channels):
                self.fix(channels.ids, op, HEAD_REASON, False)
        masks = [_arg(node, 3, "key_padding_mask"), _arg(node, 5, "attn_mask")]
        packed = (
            module._qkv_same_embed_dim
            and module.in_proj_weight is not None
            and module.bias_k is None
            and not module.add_zero_attn
        )
        first = meta[0] if isinstance(meta, (tuple, list)) else None
        if not isinstance(first, TensorMetadata):
            return False
        out = self.fresh(first, len(first.shape) - 1)
        self.fix(out.ids, op, HEAD_REASON, False)
        self.values[node] = [out, None]
        # the attention weights, when read, are per head or averaged over the heads: removing a head changes them
        weights_read = any(
            u.op == "call_function" and u.target is operator.getitem and u.args[1] == 1 and u.users for u in node.users
        )
        if not packed or weights_read or any(isinstance(m, torch.fx.Node) for m in masks):
            return True  # heads stay: a per-head mask, separate projections or read weights are not handled
        heads, width = module.num_heads, module.embed_dim
        head_dim = width // heads
        units = self.uf.new(heads)
        self.head_ids.extend(units)
        rows = [units[(r % width) // head_dim] for r in range(3 * width)]
        self.attach(rows, f"{node.target}.in_proj_weight", PARAM)
        self.param_dims[f"{node.target}.in_proj_weight"] = 0
        if module.in_proj_bias is not None:
            self.attach(rows, f"{node.target}.in_proj_bias", PARAM)
            self.param_dims[f"{node.target}.in_proj_bias"] = 0
        self.attach([units[c // head_dim] for c in range(width)], f"{node.target}.out_proj", "in")
        return True

    def _window_attention(self, node, source: _Channels, meta) -> bool:
        """torchvision's Swin attention (one wrapped call): heads of a v1 block are units made of their
        qkv rows, proj columns and relative-position-bias table column; the embedding is kept."""
        from framework.pruning.thin.attention import is_window_attention

        qkv = _arg(node, 1, "qkv_weight")
        if (
            not isinstance(meta, TensorMetadata)
            or not isinstance(qkv, torch.fx.Node)
            or qkv.op != "get_attr"
            or not str(qkv.target).endswith(".qkv.weight")
        ):
            return False
        owner = str(qkv.target)[: -len(".qkv.weight")]
        module = self.modules.get(owner)
        op = self._name(node)
        self.fix(source.ids, op, WINDOW_REASON, False)
        out = self.fresh(meta, len(meta.shape) - 1)
        self.fix(out.ids, op, WINDOW_REASON, False)
        self.values[node] = out
        if not is_window_attention(module) or _arg(node, 11, "logit_scale") is not None:
            return True  # v2 reads its per-head bias through a view with the head count fixed: heads stay
        width, heads = module.qkv.in_features, module.num_heads
        if module.qkv.out_features != 3 * width or module.proj.in_features != width or width % heads:
            return True
        head_dim = width // heads
        units = self.uf.new(heads)
        self.head_ids.extend(units)
        self.attach([units[(r % width) // head_dim] for r in range(3 * width)], f"{owner}.qkv", "out")
        self.attach([units[c // head_dim] for c in range(width)], f"{owner}.proj", "in")
        table = f"{owner}.relative_position_bias_table"
        self.attach(units, table, PARAM)
        self.param_dims[table] = 1
        return True

    # ------------------------------------------------------------------ parameters read in forward
    def attach_parameter(self, operand, channels: _Channels, out_ndim: int, channel_dim: int) -> bool | None:
        """A parameter (``get_attr``, possibly ``expand``-ed) that meets ``channels`` in an element-wise op
        or a concatenation: True when it was attached as a per-channel parameter (its slices along the
        channel dim go with the channels), None when it is broadcast along the channels (size 1, not
        touched), False when it cannot be followed."""
        origin = self.param_origin.get(operand)
        if origin is None:
            return False
        name, shape, offset = origin  # parameter name, its shape, leading dims added by broadcasting/expand
        axis = channel_dim - (out_ndim - len(shape)) if offset is None else channel_dim - offset
        if axis < 0 or axis >= len(shape) or shape[axis] == 1:
            return None
        if shape[axis] != len(channels.ids) or channels.multi:
            return False
        if self.param_dims.setdefault(name, axis) != axis:
            return False
        self.attach(channels.ids, name, PARAM)
        return True
