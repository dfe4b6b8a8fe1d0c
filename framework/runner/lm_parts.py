"""The parts of a language-model run (``model=causal_lm | pretrained_lm``, ``dataset=text``),
built and checked before any text is read: the text source, the tokenizer checked against the
model, and for ``task=train`` the model as the training loop sees it (:class:`TokenLogits`), the
pruner over its decoder layers' matrices and the zeros a one-shot pruning left, held fixed.

Fine-tuning a one-shot result: ``model=pretrained_lm model.name=<its run folder>`` (or its
``language_model/`` folder); every matrix of a decoder layer that holds zeros keeps them
(:mod:`framework.training.fixed_zeros`), so Wanda's, SparseGPT's and N:M sparsity never regrow, and
a thinned model (heads, FFN channels, experts removed) simply trains at its smaller size.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, open_dict

from framework.components import build_component
from framework.errors import ConfigError
from framework.process.distributed import SINGLE, DistContext, resolve_device
from framework.run_context import RunContext
from framework.runner.parts import Parts, build_pruner_part, build_trackers, check_training_step, params_in_use
from framework.tracking.description import RunDescription
from framework.training.fixed_zeros import zero_masks
from framework.training.rng import seed_everything

log = logging.getLogger(__name__)


@dataclass
class LanguageModelPart:
    """What a training run of a language model needs beyond the common parts."""

    tokenizer: Any  # what the blocks were cut with; saved beside the fine-tuned model
    fixed_zeros: dict[str, torch.Tensor]  # parameter name (of the trained model) -> keep mask


def build_language_model(cfg: DictConfig) -> tuple[Any, Any, Any, Path | None]:
    """The text source (checked, unread), its tokenizer, the transformers causal LM and the folder
    it was read from (None: built from a config), the tokenizer checked against the model."""
    from framework.data.text import build_tokenizer, check_tokenizer_fits
    from framework.models.causal_lm import is_causal_lm
    from framework.models.hub import has_tokenizer

    if not cfg.progress:  # transformers' own bars (loading and writing weights) follow progress=false too
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    source = build_component("dataset", cfg.dataset)
    source.check()
    folder = pretrained_folder(cfg)
    model_tokenizer = str(folder) if folder is not None and has_tokenizer(folder) else None
    source.use_model_tokenizer(model_tokenizer)
    tokenizer = build_tokenizer(source.tokenizer_name)
    seed_everything(cfg.seed)
    model = build_component("model", cfg.model, vocab_size=tokenizer.vocab_size)
    if not is_causal_lm(model):
        raise ConfigError(
            f"model._target_={cfg.model._target_} returned a {type(model).__name__}; allowed: a transformers causal LM"
        )
    check_tokenizer_fits(source.tokenizer_name, tokenizer.vocab_size, int(model.config.vocab_size), model_tokenizer)
    return source, tokenizer, model, folder


def pretrained_folder(cfg: DictConfig) -> Path | None:
    """The folder ``model.name`` reads (a run folder resolves to its ``language_model/``)."""
    if "name" not in cfg.model:
        return None
    from framework.models.hub import resolve_folder

    return resolve_folder(cfg.model.name, "model.name")


def build_language_model_parts(
    cfg: DictConfig, context: RunContext, ddp: DistContext = SINGLE, changes: Sequence[str] = ()
) -> Parts:
    """``task=train`` of a causal LM: :class:`Parts` whose model is the :class:`TokenLogits` of
    the language model (``language_model.`` prefixes its parameter names) and whose
    ``language`` holds the tokenizer and the fixed zeros."""
    from framework.models.causal_lm import TokenLogits

    device = resolve_device(cfg.device, ddp)
    check_training_step(cfg, device)
    source, tokenizer, language_model, folder = build_language_model(cfg)
    if folder is None:
        log.info(
            "model._target_=%s: a model built from a config, trained from its random initialisation", cfg.model._target_
        )
    model = TokenLogits(language_model).to(device)
    fixed = zero_masks(dict(decoder_matrices(model)))
    if fixed:
        kept = sum(int(mask.sum()) for mask in fixed.values())
        total = sum(mask.numel() for mask in fixed.values())
        log.info(
            "%d matrices hold zeros (%.1f%% of their weights): they stay zero while training",
            len(fixed),
            100 * (1 - kept / total),
        )
    pruner, _ = build_pruner_part(_with_default_selection(cfg, model), model, ())
    description = RunDescription(
        context,
        task=cfg.task,
        changes=changes,
        params=params_in_use(cfg),
        world_size=ddp.world_size,
        tags=list(cfg.tags),
    )
    trackers = build_trackers(cfg, description)
    return Parts(
        context,
        source,
        int(language_model.config.vocab_size),
        (),  # token ids: no image shape, nothing to count MACs on
        device,
        model,
        pruner,
        None,
        trackers,
        list(changes),
        language=LanguageModelPart(tokenizer, fixed),
    )


def decoder_matrices(model: Any) -> list[tuple[str, torch.Tensor]]:
    """``(name, weight)`` of every matrix (2-D or more) inside the decoder layers of a
    :class:`TokenLogits`: attention, FFN,
    fused experts and routers; embeddings, norms and ``lm_head`` are outside them."""
    from framework.pruning.llm.anatomy import decoder_layers

    layers = {id(layer) for layer in decoder_layers(model.language_model)}
    found = []
    for name, module in model.named_modules():
        if id(module) in layers:
            found += [(f"{name}.{p}", w) for p, w in module.named_parameters() if w.dim() >= 2]
    return found


def default_selection(model: Any) -> list[str]:
    """What ``pruner=agp`` prunes in a language model (a :class:`TokenLogits`) when ``pruner.weights``
    is empty: the ``nn.Linear`` matrices of the decoder layers (attention and FFN projections), routers left out."""
    from framework.pruning.llm.targets import is_router

    names = {id(w): n for n, w in decoder_matrices(model)}
    chosen = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) in names:
            if not is_router(model.language_model, name.removeprefix("language_model.")):
                chosen.append(f"{name}.weight")
    return chosen


def _with_default_selection(cfg: DictConfig, model: torch.nn.Module) -> DictConfig:
    if cfg.pruner.method == "none" or cfg.pruner.get("weights"):
        return cfg
    chosen = default_selection(model)
    if not chosen:
        raise ConfigError(
            f"pruner.method={cfg.pruner.method} prunes the nn.Linear matrices of a language model's decoder layers; "
            f"model.architecture={cfg.model.get('architecture', type(model.language_model).__name__)} has none "
            "(fused Conv1D); allowed: llama | qwen2 | mixtral, or task=oneshot"
        )
    selected = copy.deepcopy(cfg)
    with open_dict(selected):
        selected.pruner.weights = chosen
    return selected


def token_blocks(splits: Any) -> Any:
    """The text's token blocks as the training loop's splits: ``(input_ids [T], targets [T])``
    samples, the vocabulary as the classes."""
    from framework.data.bundle import DatasetBundle

    return DatasetBundle(
        splits.train, splits.val, int(splits.tokenizer.vocab_size), (splits.train.block_size,), preprocessing=None
    )
