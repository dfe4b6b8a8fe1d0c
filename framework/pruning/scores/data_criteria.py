"""Criteria that see data: ranked from activations, gradients or BatchNorm scales.

A weight-only criterion scores the rows of ``to_groups(weight)``. A :class:`DataCriterion` also
declares what it needs from the network (:data:`NEEDS`) and receives it, batch by batch, from the
calibration pass of :mod:`.calibration` (hooks on the unmodified model, only when the pruner is
about to rank). It accumulates sums over the batches and turns them into one score per group of a
layer (:meth:`DataCriterion.group_scores`). The engine ranks a weight-shaped *view* in which every
element of a group holds that group's score, so per-layer, coupled (``group_reduction``), global
and sensitivity ranking all work unchanged.

``taylor`` (Molchanov et al., CVPR 2019)
    First-order Taylor estimate of the loss change when a group is removed:
    ``Σ_batches (Σ_{w in group} w·∂L/∂w)²``. For ``fine`` the group is one weight, so the score is
    ``Σ_batches (w·∂L/∂w)²`` (it ranks like ``|w·g|``). Needs ``weight_grad``.
``activation_mean`` (Distiller's ActivationMeanRankedFilterPruner)
    ``filter``: the mean value of each output channel after the activation that follows the layer
    (through its BatchNorm and a residual add); ``channel``: the mean of each input channel the
    layer reads. filter/channel only.
``apoz`` (Hu et al., 2016, Average Percentage of Zeros)
    The same places; the score is the share of *non-zero* values, ``1 - APoZ``, so a channel that
    is mostly zero ranks low. ``filter`` needs a ReLU module after the layer (else one line naming
    the layer). filter/channel only.
``bn_gamma`` (Liu et al., ICCV 2017, network slimming)
    ``filter``: ``|γ|`` of the BatchNorm directly after the layer; ``channel``: ``|γ|`` of the
    BatchNorm whose output (through ReLU, pooling, flatten) the layer reads; behind a residual add,
    the mean ``|γ|`` of the nearest BatchNorm on every branch. No data pass. A ranked
    layer without that BatchNorm is refused naming the layer. filter/channel only.

Layers are found on the ``torch.fx`` graph of the model. Sums are accumulated over samples (or
batches for gradients), not divided by the count: ranking within a layer, the per-layer
normalisation of ``scope=global`` and coupled reductions are unchanged by a common factor.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from framework.errors import PruningError
from framework.pruning.graph.fx import BATCHNORMS, POOLS, strip_data_parallel_prefix, trace, unwrap
from framework.pruning.scores.criteria import Criterion
from framework.pruning.structures import to_groups

# What a criterion can ask for, per selected layer and batch.
NEEDS = ("input", "output", "activation", "weight_grad", "output_grad")

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish)
_ZERO_MAKING = (nn.ReLU, nn.ReLU6)  # APoZ is only meaningful where exact zeros are produced
# Between a layer's input and the BatchNorm that produced it (bn_gamma, structure=channel).
_CHANNEL_PRESERVING = _ACTIVATIONS + (
    *POOLS,
    nn.Dropout,
    nn.Identity,
    nn.Flatten,
)
_ADDS = (operator.add, operator.iadd, torch.add)


@dataclass
class LayerRecord:
    """What one batch showed of one layer; a field is None unless the criterion needs it."""

    input: torch.Tensor | None = None  # the layer's input (what channel pruning removes)
    output: torch.Tensor | None = None  # the layer's own output
    activation: torch.Tensor | None = None  # output of the activation module after the layer
    weight_grad: torch.Tensor | None = None  # dL/dW for this batch
    output_grad: torch.Tensor | None = None  # dL/d(output) for this batch


class DataCriterion(Criterion):
    """A criterion ranked from calibration data (subclass it for your own; see the module doc).

    Subclasses set :attr:`needs` (a subset of :data:`NEEDS`; may depend on the structure through
    :meth:`needs_for`), accumulate tensors into ``self.sums`` in :meth:`observe` (the calibration
    pass sums them across ranks under torchrun) and score groups in :meth:`group_scores`.
    """

    needs: tuple[str, ...] = ()
    structures: tuple[str, ...] = ("fine", "filter", "channel")
    fold_batchnorm_reason = "it ranks data, not the weights that folding rescales"

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.activation_modules: dict[str, str] = {}  # layer -> activation module (set by bind)

    # -- set-up ------------------------------------------------------------------------------
    def needs_for(self, structure: str) -> tuple[str, ...]:
        return self.needs

    def bind(self, model: nn.Module, layers: Mapping[str, nn.Module], structure: str) -> None:
        """Check the ranked ``layers`` (module name -> module) once, before training: raise a
        one-line :class:`PruningError` for a layer this criterion cannot rank."""
        if structure not in self.structures:
            raise PruningError(
                f"pruner.criterion={self.name} does not support pruner.structure={structure}; "
                f"allowed: {', '.join(self.structures)}"
            )
        if "activation" in self.needs_for(structure):
            self.activation_modules = find_activations(model, layers, self.name, self.activation_types)

    activation_types: tuple[type[nn.Module], ...] = _ACTIVATIONS

    # -- data --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the sums of the previous pass."""
        self.sums = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().double()
        if key in self.sums:
            self.sums[key] += value
        else:
            self.sums[key] = value.clone()

    def observe(self, name: str, layer: nn.Module, record: LayerRecord, structure: str) -> None:
        """Accumulate one batch of layer ``name`` into ``self.sums``."""
        raise NotImplementedError

    def group_scores(self, name: str, layer: nn.Module, weight: torch.Tensor, structure: str) -> torch.Tensor:
        """One score per group of ``to_groups(weight, structure, layer)`` (higher = kept longer)."""
        raise NotImplementedError

    def accumulated(self, key: str) -> torch.Tensor:
        if key not in self.sums:
            raise PruningError(
                f"pruner.criterion={self.name} has no calibration data for {key}; "
                "the calibration pass did not reach that layer (is it used in forward?)"
            )
        return self.sums[key]

    # The engine ranks a view whose groups are constant rows: the first element is the score.
    def __call__(self, groups: torch.Tensor) -> torch.Tensor:
        return groups[:, 0].clone()


# ------------------------------------------------------------------------------------ per channel
def channel_sums(values: torch.Tensor, reduce) -> torch.Tensor:
    """Per channel (dim 1) sum over samples of ``reduce`` applied over each sample's positions:
    ``[N, C, *spatial]`` or ``[N, C]`` -> ``[C]``."""
    flat = values.detach().reshape(values.shape[0], values.shape[1], -1)
    return reduce(flat).sum(dim=0)


def _mean_over_positions(flat: torch.Tensor) -> torch.Tensor:
    return flat.double().mean(dim=2)


def _nonzero_share(flat: torch.Tensor) -> torch.Tensor:
    return (flat != 0).double().mean(dim=2)


class _ActivationStatistic(DataCriterion):
    """A per-channel statistic of the activation after the layer (filter) or of its input (channel)."""

    structures = ("filter", "channel")
    fold_batchnorm_reason = "it measures activations after the BatchNorm already"
    statistic = staticmethod(_mean_over_positions)

    def needs_for(self, structure: str) -> tuple[str, ...]:
        return ("activation",) if structure == "filter" else ("input",)

    def observe(self, name, layer, record, structure):
        values = record.activation if structure == "filter" else record.input
        self.add(name, channel_sums(values, self.statistic))

    def group_scores(self, name, layer, weight, structure):
        scores = self.accumulated(name)
        expected = to_groups(weight, structure, layer).shape[0]
        if scores.numel() != expected:
            raise PruningError(
                f"pruner.criterion={self.name}: layer {name} produced {scores.numel()} channels of data "
                f"but its weight has {expected} {structure}s"
            )
        return scores.to(weight.device)


class ActivationMeanCriterion(_ActivationStatistic):
    """Mean post-activation value per channel (see the module docstring)."""

    name = "activation_mean"


class APoZCriterion(_ActivationStatistic):
    """``1 - APoZ`` per channel: the share of non-zero values (Hu et al., 2016)."""

    name = "apoz"
    statistic = staticmethod(_nonzero_share)
    activation_types = _ZERO_MAKING


class TaylorCriterion(DataCriterion):
    """``Σ_batches (Σ_group w·∂L/∂w)²`` (Molchanov et al., 2019); per weight for ``fine``."""

    name = "taylor"
    needs = ("weight_grad",)
    fold_batchnorm_reason = "w·dL/dw is the same for the folded weight (folding changes no score)"

    def observe(self, name, layer, record, structure):
        product = layer.weight.detach() * record.weight_grad
        if structure == "fine":
            self.add(name, product.square())
        else:
            self.add(name, to_groups(product, structure, layer).sum(dim=1).square())

    def group_scores(self, name, layer, weight, structure):
        return self.accumulated(name).reshape(-1).to(weight.device)


class BNGammaCriterion(DataCriterion):
    """``|γ|`` of the BatchNorm after the layer (filter) or before its input (channel)."""

    name = "bn_gamma"
    structures = ("filter", "channel")
    fold_batchnorm_reason = "it reads the BatchNorm scale already"

    def __init__(self) -> None:
        super().__init__()
        self.batchnorms: dict[str, nn.Module] = {}

    def bind(self, model, layers, structure):
        super().bind(model, layers, structure)
        self.batchnorms = find_batchnorms(model, layers, structure)

    def observe(self, name, layer, record, structure):  # pragma: no cover - needs no data
        pass

    def group_scores(self, name, layer, weight, structure):
        gammas = [
            bn.weight.detach().abs().double()
            if bn.weight is not None
            else torch.ones(bn.num_features, dtype=torch.float64)
            for bn in self.batchnorms[_module_name(name)]
        ]
        if len({g.numel() for g in gammas}) != 1:
            raise PruningError(f"pruner.criterion=bn_gamma: the BatchNorms before layer {name} differ in width")
        gamma = torch.stack(gammas).mean(dim=0)
        groups = to_groups(weight, structure, layer).shape[0]
        if groups != gamma.numel():  # a Linear reading a flattened C x H x W map: H·W columns each
            gamma = gamma.repeat_interleave(groups // gamma.numel())
        return gamma.double().to(weight.device)


DATA_CRITERIA = {
    "taylor": TaylorCriterion,
    "activation_mean": ActivationMeanCriterion,
    "apoz": APoZCriterion,
    "bn_gamma": BNGammaCriterion,
}


def build_data_criterion(name: str) -> DataCriterion:
    """A data-aware criterion by its name (one of :data:`framework.pruning.spec.DATA_CRITERIA`)."""
    return DATA_CRITERIA[name]()


# ------------------------------------------------------------------------------------ the graph
def _module_name(parameter_name: str) -> str:
    return strip_data_parallel_prefix(parameter_name.rsplit(".", 1)[0])


def _inner(model: nn.Module) -> nn.Module:
    return unwrap(model)[0]


def _graph(model: nn.Module, criterion: str):
    advice = "choose a weight criterion (l1, l2)"
    return trace(_inner(model), needed_by=f"pruner.criterion={criterion}", advice=advice).graph


def _layer_nodes(graph: torch.fx.Graph, layers: Iterable[str]) -> dict[str, torch.fx.Node | None]:
    nodes: dict[str, torch.fx.Node | None] = {}
    for node in graph.nodes:
        if node.op == "call_module" and node.target in layers:
            if node.target in nodes:
                nodes[node.target] = None  # called twice: no single activation belongs to it
            else:
                nodes[node.target] = node
    return nodes


def _is_add(node) -> bool:
    return (node.op == "call_function" and node.target in _ADDS) or (
        node.op == "call_method" and node.target in ("add", "add_")
    )


def find_activations(model: nn.Module, layers: Mapping[str, nn.Module], criterion: str, types) -> dict[str, str]:
    """``layer -> activation module`` for each layer whose output runs (through a BatchNorm and
    residual adds, nothing else) into exactly one activation module of ``types`` called once."""
    graph = _graph(model, criterion)
    modules = dict(_inner(model).named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    found: dict[str, str] = {}
    names = {_module_name(n + ".weight") for n in layers}
    for name, node in _layer_nodes(graph, names).items():
        current = node
        while current is not None and len(current.users) == 1:
            (user,) = current.users
            module = modules.get(str(user.target)) if user.op == "call_module" else None
            if isinstance(module, BATCHNORMS) or _is_add(user):
                current = user
                continue
            if isinstance(module, types) and calls[str(user.target)] == 1:
                found[name] = str(user.target)
            break
    missing = [n for n in names if n not in found]
    if missing:
        kinds = "ReLU/ReLU6" if types is _ZERO_MAKING else "activation"
        raise PruningError(
            f"pruner.criterion={criterion} needs a {kinds} module after each ranked layer; layer {missing[0]} "
            f"has none (its output must run, through BatchNorm or a residual add only, into one {kinds} "
            "module); exclude it with pruner.exclude or choose another criterion"
        )
    return found


def _batchnorms_before(start, modules) -> list[nn.Module]:
    """The BatchNorms whose output reaches ``start`` through channel-preserving modules, flatten
    and residual adds (every branch of an add is followed back to its nearest BatchNorm)."""
    found: list[nn.Module] = []
    pending, seen = [start], set()
    while pending:
        current = pending.pop()
        if current is None or not hasattr(current, "op") or current in seen:
            continue
        seen.add(current)
        module = modules.get(current.target) if current.op == "call_module" else None
        if isinstance(module, BATCHNORMS):
            found.append(module)
        elif _is_add(current):
            pending.extend(a for a in current.args if hasattr(a, "op"))
        elif isinstance(module, _CHANNEL_PRESERVING) or (
            current.op in ("call_function", "call_method")
            and getattr(current.target, "__name__", current.target) in ("flatten", "relu", "relu_")
        ):
            pending.append(current.args[0] if current.args else None)
    return found


def find_batchnorms(model: nn.Module, layers: Mapping[str, nn.Module], structure: str) -> dict[str, list]:
    """``layer -> [BatchNorm]``: the one directly after it (filter) or those whose output the layer
    reads through channel-preserving modules and residual adds (channel; their ``|γ|`` averaged)."""
    graph = _graph(model, "bn_gamma")
    modules = dict(_inner(model).named_modules())
    names = {_module_name(n + ".weight") for n in layers}
    found: dict[str, list[nn.Module]] = {}
    for name, node in _layer_nodes(graph, names).items():
        if node is None:
            continue
        if structure == "filter":
            if len(node.users) == 1:
                (user,) = node.users
                bn = modules.get(user.target) if user.op == "call_module" else None
                if isinstance(bn, BATCHNORMS):
                    found[name] = [bn]
            continue
        batchnorms = _batchnorms_before(node.args[0] if node.args else None, modules)
        if batchnorms:
            found[name] = batchnorms
    missing = [n for n in names if n not in found]
    if missing:
        where = "directly after" if structure == "filter" else "feeding the input of"
        raise PruningError(
            f"pruner.criterion=bn_gamma needs a BatchNorm {where} each ranked layer "
            f"(structure={structure}); layer {missing[0]} has none; exclude it with pruner.exclude "
            "or choose another criterion"
        )
    return found
