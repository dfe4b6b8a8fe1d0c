"""``prune_llm``: check a request against the model, then prune it (layer by layer, or structured
and thinned)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from framework.pruning.llm.checks import check_request
from framework.pruning.llm.layerwise import Batches, LayerReport, prune_oneshot
from framework.pruning.llm.spec import DATA_METHODS, STRUCTURED, LLMPruningSpec
from framework.pruning.llm.structured import StructuredPlan, plan_structured
from framework.pruning.llm.thin import thin_plan


@dataclass
class LLMPruningResult:
    """Fine / N:M: the masks (parameter name -> keep mask) and per-layer reports; structured: the
    plan that was applied (the model is then thinned)."""

    masks: dict[str, torch.Tensor]
    layers: list[LayerReport]
    plan: StructuredPlan | None = None


def needs_calibration(spec: LLMPruningSpec) -> bool:
    return spec.method in DATA_METHODS


def prune_llm(model: nn.Module, spec: LLMPruningSpec, samples: Batches | None) -> LLMPruningResult:
    """Prune ``model`` in place as ``spec`` says; structured pruning leaves it thinned. ``samples``:
    calibration input ids (batches ``[batch, tokens]``, or one ``[count, tokens]`` tensor); None
    for the methods that need no data (magnitude, random)."""
    check_request(model, spec)
    if spec.structure in STRUCTURED:
        plan = plan_structured(model, spec, samples)
        thin_plan(model, plan)
        return LLMPruningResult({}, [], plan)
    result = prune_oneshot(model, samples, spec)
    return LLMPruningResult(result.masks, result.layers)
