"""One-shot pruning of Hugging Face causal language models, model-aware (config and module names),
apart from the fx dependency graph of the rest of :mod:`framework.pruning`.

* :func:`prune_llm`: check the request against the model, then prune: magnitude / Wanda /
  SparseGPT / random, fine-grained or N:M, layer by layer (:mod:`.layerwise`); or heads, FFN
  channels, experts ranked (:mod:`.structured`) and cut out (:mod:`.thin`).
* :class:`LLMPruningSpec` (:mod:`.spec`): the fields and their torch-free rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from framework.pruning.llm.checks import check_request
from framework.pruning.llm.layerwise import Batches, LayerReport, OneshotResult, prune_oneshot
from framework.pruning.llm.spec import DATA_METHODS, STRUCTURED, LLMPruningSpec, make_spec, spec_problems
from framework.pruning.llm.structured import StructuredPlan, plan_structured
from framework.pruning.llm.thin import mask_plan, thin_plan


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


__all__ = [
    "LLMPruningResult",
    "LLMPruningSpec",
    "LayerReport",
    "OneshotResult",
    "StructuredPlan",
    "check_request",
    "make_spec",
    "mask_plan",
    "needs_calibration",
    "plan_structured",
    "prune_llm",
    "prune_oneshot",
    "spec_problems",
    "thin_plan",
]
