"""BN-aware ranking (``fold_batchnorm=activation``): rank by what a removal changes after BN + ReLU.

Folding (:mod:`.bn_fold`) ranks ``W·γ/√(σ²+ε)``: the scale BatchNorm applies. It ignores ``β``,
the running mean and the ReLU after the BN, so a channel that BN shifts far below zero (dead
after the ReLU whatever its scale) still ranks as important, and one with a small scale but a
large positive ``β`` ranks as unimportant although its removal shifts every reader.

Model (per output channel ``o`` of a layer followed directly by a BatchNorm, pairs found as in
:mod:`.bn_fold`): the pre-BN activation is Gaussian with the BN's running statistics,
``z_o ~ N(μ_o, σ²_o)``, so the BN output is ``y_o ~ N(β_o, s²_o)`` with
``s_o = |γ_o|·σ_o/√(σ²_o+ε)``. Whether a ReLU follows is read from the ``torch.fx`` graph (the BN's
only user is ``nn.ReLU``, ``F.relu``, ``torch.relu`` or ``.relu()``); a BN feeding anything else
(a residual add, say) is treated as the layer's output.

* ``structure=filter``: removing filter ``o`` (with its bias and BN channel, as coupled masks do)
  turns the channel's output into 0. The score is the RMS of what is lost,
  ``a_o = √E[ReLU(y_o)²] = √((β²+s²)·Φ(β/s) + β·s·φ(β/s))`` (without a ReLU ``√(β²+s²)``). The view
  is ``a_o`` in every element of row ``o``, so the ``l1`` and ``l2`` criteria both score ``a_o``.
* ``structure=fine`` / ``channel``: removing weights ``w`` of filter ``o`` changes ``z_o`` by a
  small ``δ``, ``y_o`` by ``γ_o/√(σ²_o+ε)·δ`` and, to first order, the ReLU output by that times
  ``1[y_o > 0]``, whose mean square is ``P(y_o>0) = Φ(β_o/s_o)`` times it. The view is
  ``W[o] · |γ_o|/√(σ²_o+ε) · √Φ(β_o/s_o)`` (folding times the square root of the chance that the
  unit is active; without a ReLU the factor is 1, i.e. plain folding). The magnitude of the
  layer's inputs is taken equal across channels (not modelled).

Layers without a directly following BatchNorm are ranked on their raw weights; transposed
convolutions get the fine/channel view for filters too. A view, like folding: masks apply to
the real weights and nothing in the model changes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.graph.fx import TRANSPOSED_CONVS, strip_data_parallel_prefix, trace, unwrap
from framework.pruning.scores.bn_fold import find_fold_pairs, pair_modules, scale_transposed
from framework.pruning.spec import FILTER

_RELU_FUNCTIONS = (torch.relu, torch.nn.functional.relu, torch.relu_)


def _is_relu(node, modules: dict) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), nn.ReLU)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def bns_followed_by_relu(model: nn.Module, bn_names) -> set[str]:
    """The BatchNorms among ``bn_names`` whose only user in the fx graph is a ReLU."""
    graph = trace(model, needed_by="fold_batchnorm=activation").graph
    modules = dict(model.named_modules())
    wanted = set(bn_names)
    found = set()
    for node in graph.nodes:
        if node.op == "call_module" and node.target in wanted and len(node.users) == 1:
            (user,) = node.users
            if _is_relu(user, modules):
                found.add(node.target)
    return found


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _normal_pdf(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def bn_output_moments(bn: nn.modules.batchnorm._NormBase) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean β, std s, linear gain γ/√(σ²+ε))`` of the BN output under Gaussian inputs."""
    running_var = bn.running_var
    if running_var is None:  # fold pairs hold BatchNorms with running statistics only
        raise PruningError(f"fold_batchnorm=activation needs running statistics; {type(bn).__name__} keeps none")
    inv_std = torch.rsqrt(running_var.double() + bn.eps)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(inv_std)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(inv_std)
    gain = gamma.abs() * inv_std
    std = gain * running_var.double().clamp_min(0).sqrt()
    return beta, std, gain


def active_probability(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``P(y > 0)`` for ``y ~ N(mean, std²)`` (a step at 0 when ``std = 0``)."""
    safe = std.clamp_min(1e-12)
    probability = _normal_cdf(mean / safe)
    step = (mean > 0).double()
    return torch.where(std > 0, probability, step)


def relu_rms(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``√E[ReLU(y)²]`` for ``y ~ N(mean, std²)``."""
    safe = std.clamp_min(1e-12)
    t = mean / safe
    second = (mean * mean + std * std) * _normal_cdf(t) + mean * std * _normal_pdf(t)
    second = torch.where(std > 0, second, (mean.clamp_min(0)) ** 2)
    return second.clamp_min(0).sqrt()


class ActivationRanking:
    """The BN-aware ranking view for ``structure`` (see the module docstring)."""

    def __init__(self, model: nn.Module, structure: str):
        self.structure = structure
        self.pairs = find_fold_pairs(model)
        modules = dict(model.named_modules())
        strip = strip_data_parallel_prefix
        relu_bns = bns_followed_by_relu(unwrap(model)[0], [strip(p.bn_name) for p in self.pairs])
        self._by_name = {
            strip(p.weight_name): (*pair_modules(modules, p), strip(p.bn_name) in relu_bns) for p in self.pairs
        }
        self.relu_after = {name for name, (_, _, relu) in self._by_name.items() if relu}

    def view(self, param_name: str, weight: torch.Tensor) -> torch.Tensor:
        hit = self._by_name.get(strip_data_parallel_prefix(param_name))
        if hit is None:
            return weight.detach()
        layer, bn, relu = hit
        with torch.no_grad():
            mean, std, gain = bn_output_moments(bn)
            if self.structure == FILTER and not isinstance(layer, TRANSPOSED_CONVS):
                rms = relu_rms(mean, std) if relu else (mean * mean + std * std).sqrt()
                rms = rms.to(device=weight.device, dtype=weight.dtype)
                return rms.reshape([-1] + [1] * (weight.dim() - 1)).expand(weight.shape).clone()
            scale = gain * active_probability(mean, std).sqrt() if relu else gain
            scale = scale.to(device=weight.device, dtype=weight.dtype)
            if isinstance(layer, TRANSPOSED_CONVS):
                return scale_transposed(weight.detach(), scale, layer.groups)
            return weight.detach() * scale.reshape([-1] + [1] * (weight.dim() - 1))
