"""Layer-by-layer one-shot pruning (magnitude, Wanda, SparseGPT, random; fine-grained or N:M).

The order is the papers': the calibration windows go through the model up to the first decoder
layer, whose inputs (hidden states and the keyword arguments the model passes every layer:
positions, masks) are caught there. Then, for each layer in turn: run it on those inputs while
hooks gather each matrix's statistics, prune every matrix of the layer, and run the pruned layer
again; its outputs are the next layer's inputs. Each layer is thus calibrated on what the already
pruned layers before it produce.

A method that needs no data (magnitude, random) and no error measurement skips the forward
passes. ``after_layer`` is called once a layer is final (a run checkpoints there); ``start_layer``
continues a run that stopped: the layers before it, already pruned, are replayed to rebuild the
inputs, which gives the same inputs as before (same weights, same windows).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from framework.pruning.llm.anatomy import decoder_layers
from framework.pruning.llm.masks import LAYER, ROW, keep_mask
from framework.pruning.llm.sparsegpt import sparsegpt_prune
from framework.pruning.llm.spec import RANDOM, SPARSEGPT, WANDA, LLMPruningSpec, nm_pattern
from framework.pruning.llm.stats import Statistics, reconstruction_error
from framework.pruning.llm.targets import Target, layer_targets, observe


class _Caught(Exception):
    """Raised by the hook on the first decoder layer once its inputs are caught."""


@dataclass
class LayerInputs:
    """One calibration batch's input to a decoder layer: hidden states, other positional
    arguments and keyword arguments as the model passed them."""

    hidden: torch.Tensor
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class LayerReport:
    """What pruning did to one decoder layer: per matrix, its sparsity and (when measured) the
    relative reconstruction error ``||(W - W') X||^2 / ||W X||^2`` on the layer's calibration inputs."""

    index: int
    sparsity: dict[str, float] = field(default_factory=dict)
    error: dict[str, float] = field(default_factory=dict)


@dataclass
class OneshotResult:
    masks: dict[str, torch.Tensor]  # parameter name -> keep mask (the parameter's shape)
    layers: list[LayerReport]


Batches = torch.Tensor | Sequence[torch.Tensor]
BATCH = 8  # windows per forward pass when the calibration set is given as one tensor


def as_batches(samples: Batches) -> list[torch.Tensor]:
    """Calibration input ids as a list of ``[batch, tokens]`` tensors (a ``[count, tokens]`` tensor is
    cut into batches of :data:`BATCH`)."""
    if isinstance(samples, torch.Tensor):
        return list(samples.split(BATCH))
    return list(samples)


def capture_layer_inputs(model: nn.Module, samples: Batches) -> list[LayerInputs]:
    """The first decoder layer's inputs for every calibration batch."""
    first = decoder_layers(model)[0]
    caught: list[LayerInputs] = []

    def catch(_module, args, kwargs):
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs.pop("hidden_states")
        caught.append(LayerInputs(hidden.detach(), tuple(args[1:]), kwargs))
        raise _Caught

    device = next(model.parameters()).device
    handle = first.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for batch in as_batches(samples):
            try:
                model(input_ids=batch.to(device), use_cache=False)
            except _Caught:
                pass
    finally:
        handle.remove()
    return caught


def run_layer(layer: nn.Module, inputs: list[LayerInputs]) -> list[LayerInputs]:
    """The layer's outputs, as the next layer's inputs."""
    outputs = []
    for item in inputs:
        out = layer(item.hidden, *item.args, **item.kwargs)
        hidden = out[0] if isinstance(out, (tuple, list)) else out
        outputs.append(LayerInputs(hidden.detach(), item.args, item.kwargs))
    return outputs


def sparsity_for(name: str, spec: LLMPruningSpec) -> float | None:
    """The sparsity of matrix ``name``: None when excluded, the first matching levels
    pattern, else the uniform one."""
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in spec.exclude):
        return None
    for pattern, value in spec.levels.items():
        if fnmatch.fnmatchcase(name, pattern):
            return float(value)
    return float(spec.final_sparsity)


class _Pruner:
    """Prunes one matrix at a time from its statistics and records masks and report lines."""

    def __init__(self, spec: LLMPruningSpec, masks: dict[str, torch.Tensor], measure_error: bool) -> None:
        self.spec, self.masks, self.measure_error = spec, masks, measure_error
        self.nm = nm_pattern(spec)

    def scores(self, target: Target, weight: torch.Tensor, stats: Statistics, index: int) -> torch.Tensor:
        if self.spec.method == WANDA:
            norms = stats.column_norms(target.name, weight.shape[1], weight.device)
            return weight.abs().to(norms.dtype) * norms.unsqueeze(0)
        if self.spec.method == RANDOM:
            generator = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + index)
            return torch.rand(weight.shape, generator=generator).to(weight.device)
        return weight.abs()

    @torch.no_grad()
    def prune(self, target: Target, stats: Statistics, index: int, report: LayerReport) -> None:
        sparsity = sparsity_for(target.name, self.spec)
        if sparsity is None:
            return
        weight = target.weight().detach().clone()
        if self.spec.method == SPARSEGPT:
            new, keep = sparsegpt_prune(
                weight, stats.gram[target.name], sparsity, self.nm, self.spec.block, self.spec.damping, target.name
            )
        else:
            group = ROW if self.spec.method == WANDA else LAYER
            keep = keep_mask(self.scores(target, weight, stats, index), sparsity, group, self.nm)
            new = weight * keep.to(weight.dtype)
        target.set_weight(new)
        full = target.full_mask(keep)
        previous = self.masks.get(target.param_name)
        self.masks[target.param_name] = full if previous is None else previous & full
        report.sparsity[target.name] = 1.0 - float(keep.float().mean())
        if target.name in stats.gram and self.measure_error:
            report.error[target.name] = reconstruction_error(weight, new, stats.gram[target.name])


def prune_oneshot(
    model: nn.Module,
    samples: Batches | None,
    spec: LLMPruningSpec,
    *,
    measure_error: bool = False,
    start_layer: int = 0,
    masks: dict[str, torch.Tensor] | None = None,
    after_layer: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
) -> OneshotResult:
    """Prune ``model`` (a transformers causal LM) in place, layer by layer, as ``spec`` says.

    ``samples``: calibration input ids, batches ``[batch, tokens]`` or one ``[count, tokens]``
    tensor (None for magnitude / random);
    ``measure_error``: also gather every matrix's Gram matrix and report its reconstruction error.
    """
    needs_data = spec.method in (WANDA, SPARSEGPT) or measure_error
    if needs_data and samples is None:
        raise ValueError(f"pruner.method={spec.method} needs calibration samples")
    layers = decoder_layers(model)
    layer_names = {id(module): name for name, module in model.named_modules()}
    masks = {} if masks is None else masks
    pruner = _Pruner(spec, masks, measure_error)
    reports: list[LayerReport] = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        inputs = capture_layer_inputs(model, samples) if needs_data and samples is not None else []
        counter = 0
        for index, layer in enumerate(layers):
            targets = layer_targets(model, layer, layer_names[id(layer)])
            if index < start_layer:
                inputs = run_layer(layer, inputs) if inputs else inputs
                counter += len(targets)
                continue
            stats = Statistics(columns=spec.method == WANDA, gram=spec.method == SPARSEGPT or measure_error)
            if inputs:
                with observe(targets, stats.feed):
                    run_layer(layer, inputs)
            report = LayerReport(index)
            for target in targets:
                pruner.prune(target, stats, counter, report)
                counter += 1
            reports.append(report)
            if inputs and index + 1 < len(layers):
                inputs = run_layer(layer, inputs)
            if after_layer is not None:
                after_layer(index, masks)
    model.train(was_training)
    return OneshotResult(masks, reports)
