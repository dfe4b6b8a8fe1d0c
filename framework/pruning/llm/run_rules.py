"""What a language-model run takes (docs/language_models.md), checked before anything is built;
each mistake is one line naming the key, the value and what is allowed. Imports no torch (and no
OmegaConf: ``cfg`` is read through ``get``, ``framework.config`` passes the resolved pruner node).

``task=oneshot``: a causal LM, text and an LLM pruner (wanda, sparsegpt, llm_*). ``task=train``
of a causal LM (fine-tuning, gradual pruning): text, and a pruner that ranks single weights
(``pruner=agp | level | agp_nm``, structure fine or nm, a weight criterion); the parts of the
classifier recipe that have no meaning for a transformer are refused rather than ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.pruning.llm.spec import TARGET as LLM_PRUNER
from framework.pruning.llm.spec import node_problems as llm_pruner_problems

LM_MODELS = ("framework.models.causal_lm.causal_lm", "framework.models.causal_lm.pretrained_causal_lm")
TEXT_DATASET = "framework.data.text.Text"
LLM_PRUNER_OPTIONS = "pruner=wanda | sparsegpt | llm_magnitude | llm_heads | llm_ffn | llm_experts"
LM_MODEL_OPTIONS = "model=causal_lm | qwen2_tiny | gpt2_tiny | mixtral_tiny | pretrained_lm"
# what task=train prunes a language model with: single weights ranked by their own magnitude
TRAIN_STRUCTURES = ("fine", "nm")
WEIGHT_CRITERIA = (
    "framework.pruning.scores.criteria.L1Criterion",
    "framework.pruning.scores.criteria.L2Criterion",
    "framework.pruning.scores.criteria.RandomCriterion",
)


def _select(cfg: Any, dotted: str) -> Any:
    node = cfg
    for key in dotted.split("."):
        node = node.get(key) if hasattr(node, "get") else None
        if node is None:
            return None
    return node


def trains_language_model(cfg: Any) -> bool:
    return cfg.task == "train" and _select(cfg, "model._target_") in LM_MODELS


def language_model_problems(cfg: Any, pruner: Mapping[str, Any]) -> list[str]:
    """The language-model rules of ``cfg`` (``pruner``: its pruner node, resolved), one line each
    (none for a classifier's run)."""
    if cfg.task == "oneshot":
        return _oneshot_problems(cfg, pruner)
    if cfg.task == "train" and (
        _select(cfg, "model._target_") in LM_MODELS or _select(cfg, "dataset._target_") == TEXT_DATASET
    ):
        return _train_problems(cfg)
    return _other_task_problems(cfg)


def _other_task_problems(cfg: Any) -> list[str]:
    model, dataset = _select(cfg, "model._target_"), _select(cfg, "dataset._target_")
    if _select(cfg, "pruner._target_") == LLM_PRUNER:
        return [
            f"pruner.method={_select(cfg, 'pruner.method')} prunes a language model one-shot; allowed: task=oneshot"
        ]
    if model in LM_MODELS:
        return [
            f"model._target_={model} is a causal language model, which task={cfg.task} does not take; "
            "allowed: task=oneshot | train"
        ]
    if dataset == TEXT_DATASET:
        return [
            f"dataset=text feeds language models, which task={cfg.task} does not take; allowed: task=oneshot | train"
        ]
    return []


def _oneshot_problems(cfg: Any, pruner: Mapping[str, Any]) -> list[str]:
    problems = []
    if _select(cfg, "pruner._target_") != LLM_PRUNER:
        problems.append(
            f"task=oneshot needs a language-model pruner; got pruner.method={_select(cfg, 'pruner.method')}; "
            f"allowed: {LLM_PRUNER_OPTIONS}"
        )
    else:
        problems.extend(llm_pruner_problems(pruner))
    model = _select(cfg, "model._target_")
    if model not in LM_MODELS:
        problems.append(
            f"task=oneshot prunes a causal language model; got model._target_={model}; allowed: {LM_MODEL_OPTIONS}"
        )
    dataset = _select(cfg, "dataset._target_")
    if dataset != TEXT_DATASET:
        problems.append(
            f"task=oneshot calibrates and measures perplexity on text; got dataset._target_={dataset}; allowed: dataset=text"
        )
    if cfg.pretrained is not None:
        problems.append(
            "task=oneshot reads a language model with model=pretrained_lm model.name=<folder>; "
            f"pretrained={cfg.pretrained} does not apply; allowed: pretrained=null"
        )
    return problems


def _train_problems(cfg: Any) -> list[str]:
    """task=train of a causal LM: the model, the text, the pruner, and what does not apply."""
    model, dataset = _select(cfg, "model._target_"), _select(cfg, "dataset._target_")
    if model not in LM_MODELS:
        return [f"dataset=text feeds language models; got model._target_={model}; allowed: {LM_MODEL_OPTIONS}"]
    problems = []
    if dataset != TEXT_DATASET:
        problems.append(
            f"a causal language model trains on text; got dataset._target_={dataset}; allowed: dataset=text"
        )
    problems.extend(_train_pruner_problems(cfg))
    if cfg.pretrained is not None:
        problems.append(
            f"pretrained={cfg.pretrained}: a language model starts from model=pretrained_lm model.name=<folder> "
            "(a save_pretrained folder, or a task=oneshot run folder); allowed: pretrained=null"
        )
    if cfg.fold_batchnorm:
        problems.append(f"fold_batchnorm={cfg.fold_batchnorm}: a language model has no BatchNorm; allowed: false")
    for node, option in (("distill", "kd"), ("regularizer", _select(cfg, "regularizer._target_"))):
        if cfg.get(node):
            problems.append(f"{node}={option} is not available when training a language model; allowed: {node}=none")
    if _select(cfg, "card.enabled"):
        problems.append("card.enabled=true: the report card compares classifiers; allowed: false for a language model")
    if _select(cfg, "deploy.quantize") not in (None, "none"):
        problems.append(
            f"deploy.quantize={_select(cfg, 'deploy.quantize')}: a language model is deployed as its save_pretrained "
            "folder, without ONNX or int8; allowed: deploy.quantize=none"
        )
    return problems


def _train_pruner_problems(cfg: Any) -> list[str]:
    method = _select(cfg, "pruner.method")
    if _select(cfg, "pruner._target_") == LLM_PRUNER:
        return [
            f"pruner.method={method} prunes a language model one-shot; allowed: task=oneshot (then fine-tune its run "
            "folder with task=train model=pretrained_lm model.name=<run folder>), or pruner=agp | level | agp_nm here"
        ]
    if method in (None, "none"):
        return []
    problems = []
    structure = _select(cfg, "pruner.structure")
    if structure not in TRAIN_STRUCTURES:
        problems.append(
            f"pruner.structure={structure} on a language model in task=train; allowed: fine | nm "
            "(heads, FFN channels and experts: task=oneshot pruner=llm_heads | llm_ffn | llm_experts, then fine-tune)"
        )
    criterion = _select(cfg, "pruner.criterion._target_")
    if criterion is not None and criterion not in WEIGHT_CRITERIA:
        problems.append(
            f"pruner.criterion._target_={criterion} ranks by activations or BatchNorm, which a language model's "
            "training does not feed; allowed: pruner/criterion=l1 | l2 | random"
        )
    if _select(cfg, "pruner.budget") is not None:
        problems.append(f"pruner.budget={_select(cfg, 'pruner.budget')} counts a classifier's MACs; allowed: null")
    return problems
