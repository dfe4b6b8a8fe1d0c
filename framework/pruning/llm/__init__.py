"""One-shot pruning of Hugging Face causal language models, model-aware (config and module names),
apart from the fx dependency graph of the rest of :mod:`framework.pruning`.

* :func:`prune_llm`: check the request against the model, then prune: magnitude / Wanda /
  SparseGPT / random, fine-grained or N:M, layer by layer (:mod:`.layerwise`); or heads, FFN
  channels, experts ranked (:mod:`.structured`) and cut out (:mod:`.thin`).
* :class:`LLMPruningSpec` (:mod:`.spec`): the fields and their torch-free rules.

Names are imported on first use (PEP 562): the configuration check reads :mod:`.spec` without
paying for torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LLMPruningResult": "oneshot",
    "needs_calibration": "oneshot",
    "prune_llm": "oneshot",
    "LLMPruningSpec": "spec",
    "make_spec": "spec",
    "spec_problems": "spec",
    "LayerReport": "layerwise",
    "OneshotResult": "layerwise",
    "prune_oneshot": "layerwise",
    "StructuredPlan": "structured",
    "plan_structured": "structured",
    "check_request": "checks",
    "mask_plan": "thin",
    "thin_plan": "thin",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'framework.pruning.llm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"framework.pruning.llm.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
