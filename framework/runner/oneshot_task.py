"""``task=oneshot``: a causal language model calibrated, pruned once and measured, no training.

Read top to bottom: the parts are built and checked before any text is read (the dataset's files,
the tokenizer against the model, the pruner against the model's widths and heads, the trackers'
store); then the text is tokenized, the dense model's perplexity measured (step 0), the model
pruned (:func:`framework.pruning.llm.prune_llm`) and measured again (step 1), and the pruned model
written with ``save_pretrained`` to ``<run dir>/language_model/`` (what
``AutoModelForCausalLM.from_pretrained`` loads) and logged with the run's files.

Resume. Layer-by-layer pruning (fine, N:M) writes ``checkpoints/last.pt`` after each decoder
layer: the weights, the masks so far, the dense model's metrics, the tracker's record and the
config. ``resume=auto`` after a crash (a SIGKILL during calibration) takes it, replays the layers
already pruned on the same calibration windows to rebuild the next layer's inputs, and goes on:
the masks and the perplexity are those of a run that never stopped. Structured pruning (heads,
FFN, experts) ranks every layer in one pass and is not checkpointed.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from framework.analysis.perplexity import perplexity
from framework.data.text import Text, TextSplits
from framework.errors import ConfigError
from framework.process.distributed import SINGLE, resolve_device
from framework.pruning.llm import LLMPruningSpec, check_request, make_spec, prune_llm
from framework.pruning.llm.layerwise import LayerReport, prune_oneshot
from framework.pruning.llm.spec import DATA_METHODS, STRUCTURED
from framework.run_context import RunContext
from framework.runner.lm_parts import build_language_model
from framework.runner.parts import build_trackers, params_in_use, recorded_params, resolved
from framework.runner.resume_guard import config_changes
from framework.runner.run_files import oneshot_files
from framework.runner.summary import where_everything_is
from framework.serialization import load_weights_only
from framework.tracking.description import RunDescription
from framework.tracking.group import Trackers
from framework.training.checkpoint import save_atomic

log = logging.getLogger(__name__)

ONESHOT = "oneshot"  # the checkpoint's mark: a task=oneshot checkpoint, not a training one
# what a one-shot run does not use: nothing is trained, nothing is exported to ONNX
NOT_USED = ("schedule", "optimizer", "lr_scheduler", "epochs", "regularizer", "distill", "deploy", "fold_batchnorm")


@dataclass
class OneshotParts:
    source: Text
    model: torch.nn.Module  # the transformers causal LM
    spec: LLMPruningSpec
    trackers: Trackers
    params: dict[str, str]  # what the checkpoint records of the config


def build_oneshot_parts(cfg: DictConfig, context: RunContext) -> OneshotParts:
    """Text source (checked, unread), tokenizer, model, the pruning request checked against the
    model, the trackers connected: every refusal comes before any text is read."""
    source, _, model, folder = build_language_model(cfg)
    if folder is None:
        log.warning(
            "task=oneshot on model._target_=%s: a model built from a config is untrained, so its perplexity "
            "says little; prune a trained one with model=pretrained_lm model.name=<folder>",
            cfg.model._target_,
        )
    spec = make_spec(resolved(cfg.pruner))
    check_request(model, spec)
    model.to(resolve_device(cfg.device, SINGLE))
    used = {key: value for key, value in params_in_use(cfg).items() if key not in NOT_USED}
    description = RunDescription(context, task=ONESHOT, params=used, tags=list(cfg.tags))
    return OneshotParts(source, model, spec, build_trackers(cfg, description), recorded_params(cfg))


def oneshot(cfg: DictConfig, context: RunContext, resume_path: Path | None = None) -> dict[str, float]:
    """Calibrate, prune and measure as ``cfg`` says; returns the pruned model's metrics."""
    parts = build_oneshot_parts(cfg, context)
    checkpoint = _checkpoint(cfg, resume_path, parts.params)
    # -- from here on, text is read ---------------------------------------------------------
    splits = parts.source.load()
    trackers = parts.trackers
    if checkpoint is not None:
        trackers.load_state_dict(checkpoint["trackers"])
    trackers.start(0 if checkpoint is None else 1)
    try:
        if checkpoint is None:
            dense = measure(parts.model, splits, cfg)
            trackers.log_metrics(dense, 0)
        else:
            dense = dict(checkpoint["dense"])
        pruned = {**measure_after(cfg, context, parts, splits, checkpoint, dense)}
        trackers.log_metrics(pruned, 1)
        save_language_model_of(parts.model, context.language_model, splits)
        trackers.log_files(oneshot_files(context))
    except BaseException as error:
        trackers.fail(error)
        raise
    trackers.finish()
    log.info(
        "one-shot %s %s: val/perplexity %.4f -> %.4f",
        parts.spec.method,
        parts.spec.structure,
        dense["val/perplexity"],
        pruned["val/perplexity"],
    )
    log.info(where_everything_is(context, [dense, pruned], trackers.where()))
    return pruned


def measure(model: torch.nn.Module, splits: TextSplits, cfg: DictConfig) -> dict[str, float]:
    """Perplexity on the validation blocks (``loader.limit_val_batches`` of them at most), its
    log (the mean token cross-entropy) and the parameter count."""
    value = perplexity(model, splits.val, batch_size=cfg.loader.batch_size, max_batches=cfg.loader.limit_val_batches)
    return {
        "val/perplexity": value,
        "val/loss": math.log(value),
        "params/total": float(sum(p.numel() for p in model.parameters())),
    }


def calibration_batches(spec: LLMPruningSpec, splits: TextSplits, cfg: DictConfig) -> list[torch.Tensor] | None:
    """``calibration_batches`` batches of windows at seeded random offsets of the training split;
    None for the methods that need no data."""
    if spec.method not in DATA_METHODS:
        return None
    count = spec.calibration_batches * cfg.loader.batch_size
    return list(splits.train.random_windows(count, seed=cfg.seed).split(cfg.loader.batch_size))


def measure_after(
    cfg: DictConfig,
    context: RunContext,
    parts: OneshotParts,
    splits: TextSplits,
    checkpoint: Mapping[str, Any] | None,
    dense: Mapping[str, float],
) -> dict[str, float]:
    """Prune (continuing ``checkpoint``), write the per-matrix table, measure the pruned model."""
    spec, model = parts.spec, parts.model
    samples = calibration_batches(spec, splits, cfg)
    if spec.structure in STRUCTURED:
        prune_llm(model, spec, samples)  # thinned: params/total says how much smaller
        return measure(model, splits, cfg)
    start, masks = 0, None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        start, masks = int(checkpoint["layers_done"]), dict(checkpoint["masks"])
        log.info("resumed one-shot pruning at decoder layer %d from %s", start, context.last_checkpoint)

    def keep(index: int, so_far: dict[str, torch.Tensor]) -> None:
        state = {
            ONESHOT: True,
            "layers_done": index + 1,
            "model": model.state_dict(),
            "masks": so_far,
            "dense": dict(dense),
            "hooks": {"config": {"params": parts.params}},
            "trackers": parts.trackers.state_dict(),
        }
        save_atomic(state, context.last_checkpoint)

    result = prune_oneshot(model, samples, spec, start_layer=start, masks=masks, after_layer=keep)
    write_layer_table(result.layers, context.pruning / "layers.csv", start)
    total = sum(int(mask.numel()) for mask in result.masks.values())
    removed = sum(int((~mask).sum()) for mask in result.masks.values())
    return {**measure(model, splits, cfg), "sparsity/pruned_matrices": removed / max(total, 1)}


def write_layer_table(layers: list[LayerReport], path: Path, start: int) -> None:
    """One row per pruned matrix: its layer and the share removed (a resumed run appends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = start == 0 or not path.is_file()
    with path.open("w" if new else "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["layer", "matrix", "sparsity"])
        for report in layers:
            for name, value in report.sparsity.items():
                writer.writerow([report.index, name, f"{value:.6f}"])


def save_language_model_of(model: torch.nn.Module, folder: Path, splits: TextSplits) -> None:
    from framework.models.causal_lm import save_language_model

    save_language_model(model, folder, splits.tokenizer)


def _checkpoint(cfg: DictConfig, resume_path: Path | None, params: Mapping[str, str]) -> dict[str, Any] | None:
    """The one-shot checkpoint to continue, its config compared with this one's; None to start."""
    if resume_path is None:
        return None
    checkpoint = load_weights_only(resume_path, f"checkpoint '{resume_path}'", "start a new run without resume")
    if not isinstance(checkpoint, dict) or not checkpoint.get(ONESHOT):
        raise ConfigError(
            f"resume={resume_path} is not a task=oneshot checkpoint; allowed: resume=auto in the run folder of a one-shot run"
        )
    config_changes(checkpoint, params, allow=False)
    return checkpoint
