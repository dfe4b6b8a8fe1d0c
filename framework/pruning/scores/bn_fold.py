"""BatchNorm folding for ranking: rank weights as the network will use them after fusion.

A layer followed directly by BatchNorm computes, in eval mode, for each output channel ``o``::

    y_o = γ_o · (z_o - μ_o) / √(σ²_o + ε) + β_o,   z_o = (W ⋆ x)_o + b_o

which is the same as a single layer with

    W_fold[o] = W[o] · γ_o / √(σ²_o + ε)
    b_fold[o] = (b_o - μ_o) · γ_o / √(σ²_o + ε) + β_o

(``γ``/``β`` are the BN weight/bias, ``μ``/``σ²`` its running mean/variance). With
``fold_batchnorm=true`` the pruner ranks ``W_fold`` instead of ``W``, so a filter whose BN scales
it towards zero ranks as small even though its raw weights are large. Masks are still applied to
the real weights ``W``; the folded copy is only looked at.

Only the scale ``γ/√(σ²+ε)`` multiplies the weights. ``β`` and ``μ`` end up in the folded *bias*,
which no pruner here ranks, so they cannot change any weight's rank and are ignored.

On a freshly initialised model (``γ = 1``, ``σ² = 1``) the scale is ``1/√(1+ε)`` for every channel:
a uniform factor that changes no ranking. Folding only starts to matter once the statistics and
``γ`` have been learned, e.g. when pruning a pretrained model or after some training.

Which BN belongs to which layer is read from the model's ``torch.fx`` graph, never guessed from
module names or order: the layer's output must go straight, and only, into the BN. Anything in
between (activation, pooling, residual add), a second consumer, or a layer used twice means the
BN does not see exactly that layer's output, so folding would be wrong and is not done.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.graph.fx import (
    BATCHNORMS,
    DATA_PARALLEL_PREFIX,
    DATA_PARALLEL_WRAPPERS,
    OUT_FIRST_LAYERS,
    TRANSPOSED_CONVS,
    strip_data_parallel_prefix,
    trace,
    weight_of,
)


@dataclass(frozen=True)
class FoldPair:
    """A weight that is ranked folded: ``weight_name`` of ``layer_name``, scaled by ``bn_name``."""

    weight_name: str
    layer_name: str
    bn_name: str


def _out_channels(layer: nn.Linear | nn.modules.conv._ConvNd) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _foldable_bn(layer: nn.Linear | nn.modules.conv._ConvNd, bn: nn.Module | None) -> bool:
    """Whether ``bn`` has running statistics that match ``layer``'s output channels."""
    if not isinstance(bn, BATCHNORMS) or bn.running_var is None:
        # Without running statistics (track_running_stats=False) there is nothing fixed to fold.
        return False
    return bn.num_features == _out_channels(layer)


def find_fold_pairs(model: nn.Module) -> list[FoldPair]:
    """Return the layers whose output goes directly and only into a BatchNorm.

    Skipped: layers or BNs called more than once, tied or directly-read weights, BNs without
    running statistics and channel-count mismatches. A Linear→BatchNorm1d pair is assumed to see
    [N, features] (the only shape BN1d normalises per feature); a 3-D Linear output whose length
    happens to equal the feature count cannot be told apart without running the model.

    Raises PruningError if the model cannot be traced by ``torch.fx.symbolic_trace``.
    """
    if isinstance(model, DATA_PARALLEL_WRAPPERS):
        # The wrappers' forward (scatter/gather) is not traceable; the wrapped model is.
        return [
            FoldPair(*(DATA_PARALLEL_PREFIX + name for name in (p.weight_name, p.layer_name, p.bn_name)))
            for p in find_fold_pairs(model.module)
        ]
    graph = trace(model).graph
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    # A Parameter reachable from two modules (tied weights) serves two layers; skip those too.
    param_uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    # A weight also read directly (``self.conv.weight`` in forward) is used outside the layer.
    attrs = {n.target for n in graph.nodes if n.op == "get_attr"}

    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1:
            continue  # shared layers see two inputs; only one of them would be followed by the BN
        layer = modules.get(node.target)
        if not isinstance(layer, OUT_FIRST_LAYERS + TRANSPOSED_CONVS):
            continue
        if param_uses[id(layer.weight)] != 1 or f"{node.target}.weight" in attrs:
            continue
        if len(node.users) != 1:
            continue
        (user,) = node.users
        if user.op != "call_module" or calls[user.target] != 1:
            continue  # a shared BN's running statistics mix several layers' outputs
        if list(user.args) != [node] or user.kwargs:
            continue
        bn = modules.get(user.target)
        if not _foldable_bn(layer, bn):
            continue
        pairs.append(FoldPair(f"{node.target}.weight", node.target, user.target))
    return pairs


def pair_modules(modules: Mapping[str, nn.Module], pair: FoldPair) -> tuple[nn.Module, nn.modules.batchnorm._BatchNorm]:
    """The layer and the BatchNorm of ``pair`` among ``modules`` (name -> module)."""
    layer, bn = modules[pair.layer_name], modules[pair.bn_name]
    if not isinstance(bn, BATCHNORMS):
        raise PruningError(f"fold_batchnorm: {pair.bn_name} is a {type(bn).__name__}, not a BatchNorm")
    return layer, bn


def pairs_report(pairs: list[FoldPair]) -> list[dict[str, str]]:
    """JSON-serialisable form of ``pairs`` for logging as a run artifact (count = ``len``)."""
    return [asdict(p) for p in pairs]


def batchnorms_at_initial_state(model: nn.Module, pairs: Iterable[FoldPair]) -> bool:
    """Whether every BatchNorm that ``pairs`` fold is still as constructed (γ 1, β 0, running mean
    0, running var 1): then each folded scale is the same constant and the folded ranking is the
    raw one. False when nothing is folded."""
    modules = {strip_data_parallel_prefix(n): m for n, m in model.named_modules()}
    found = [modules.get(strip_data_parallel_prefix(p.bn_name)) for p in pairs]
    bns = [bn for bn in found if isinstance(bn, BATCHNORMS)]
    if not found or len(bns) != len(found):
        return False

    def equals(tensor: torch.Tensor | None, value: float) -> bool:
        return tensor is None or bool(torch.all(tensor.detach() == value))

    return all(
        equals(bn.weight, 1.0) and equals(bn.bias, 0.0) and equals(bn.running_mean, 0.0) and equals(bn.running_var, 1.0)
        for bn in bns
    )


class FoldedRanking:
    """Gives the engine the BN-folded view of weights; traces ``model`` once on construction."""

    def __init__(self, model: nn.Module):
        self.pairs = find_fold_pairs(model)
        modules = dict(model.named_modules())
        # Module objects, not tensors, so ``view`` reads the BN statistics current at call time.
        self._by_name = {p.weight_name: pair_modules(modules, p) for p in self.pairs}
        self._by_stripped = {strip_data_parallel_prefix(n): v for n, v in self._by_name.items()}

    def _lookup(self, param_name: str) -> tuple[nn.Module, nn.modules.batchnorm._BatchNorm] | None:
        hit = self._by_name.get(param_name)
        return hit if hit is not None else self._by_stripped.get(strip_data_parallel_prefix(param_name))

    def is_folded(self, param_name: str) -> bool:
        """Whether ``param_name`` (with or without a leading ``module.``) is ranked folded."""
        return self._lookup(param_name) is not None

    def view(self, param_name: str, weight: torch.Tensor) -> torch.Tensor:
        """Return what the pruner should rank for ``weight``: folded if its layer has a BN.

        The result is detached. For a layer without a BN it is ``weight.detach()``, which shares
        storage with ``weight``: rank it, do not modify it in place.
        """
        hit = self._lookup(param_name)
        if hit is None:
            return weight.detach()
        layer, bn = hit
        expected = weight_of(layer).shape
        if weight.shape != expected:
            raise PruningError(
                f"fold_batchnorm: {param_name} has shape {tuple(weight.shape)}, expected {tuple(expected)}"
            )
        running_var = bn.running_var
        if running_var is None:  # fold pairs hold BatchNorms with running statistics only
            raise PruningError(f"fold_batchnorm: {type(bn).__name__} {param_name} keeps no running statistics")
        # no_grad keeps γ and W out of any graph and restores the caller's grad mode on exit.
        with torch.no_grad():
            scale = torch.rsqrt(running_var + bn.eps)
            if bn.weight is not None:  # affine=False means γ = 1
                scale = bn.weight * scale
            scale = scale.to(device=weight.device, dtype=weight.dtype)
            if isinstance(layer, TRANSPOSED_CONVS):
                return scale_transposed(weight, scale, layer.groups)
            return weight * scale.reshape([-1] + [1] * (weight.dim() - 1))


def scale_transposed(w: torch.Tensor, scale: torch.Tensor, groups: int) -> torch.Tensor:
    """Scale a ConvTranspose weight [I, O/g, k...] by a per-output-channel ``scale`` of size O.

    Output channel ``o`` is column ``o % (O/g)`` of the input rows of group ``o // (O/g)``, so the
    weight is viewed as [g, I/g, O/g, k...] and the scale as [g, 1, O/g, 1...].
    """
    in_ch, out_per_group, *kernel = w.shape
    grouped = w.reshape(groups, in_ch // groups, out_per_group, *kernel)
    s = scale.reshape(groups, 1, out_per_group, *[1] * len(kernel))
    return (grouped * s).reshape(w.shape)
