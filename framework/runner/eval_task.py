"""``task=eval pretrained=<file>``: the model ``build_parts`` makes, with the weights of a run's
checkpoint (``checkpoints/best.pt``, ``last.pt``) or thinned model (``thinned/model.pt``, resized by
its recipe), evaluated on the validation split and logged as a run (val metrics at step 0,
``metrics.jsonl``, the trackers) without training. A missing or foreign file is one line
(:func:`framework.models.load_pretrained`, run inside ``build_parts``) before any data is read."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch
from omegaconf import DictConfig

from framework.data import build_loaders, limit_batches, load_splits
from framework.runner.context import RunContext
from framework.runner.parts import build_parts
from framework.runner.summary import where_everything_is
from framework.tracking.metrics_file import MetricsFileHook
from framework.training import Trainer
from framework.training.distributed import SINGLE

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig, context: RunContext) -> dict[str, float]:
    parts = build_parts(cfg, context, SINGLE)
    model = parts.model
    bundle = load_splits(parts.data_source, cfg.dataset._target_)
    parts.description.preprocessing = bundle.preprocessing
    bundle = limit_batches(bundle, cfg.loader.batch_size, None, cfg.loader.limit_val_batches)
    _, val_loader = build_loaders(
        bundle, batch_size=cfg.loader.batch_size, num_workers=cfg.loader.num_workers, seed=cfg.seed
    )
    # The loop's own evaluation (same metrics as training's val/...), with no optimizer step ever taken.
    evaluator = Trainer(
        model, torch.optim.SGD(model.parameters(), lr=0.0), [], val_loader, epochs=0, device=parts.device
    )
    hooks = [MetricsFileHook(context.run_dir), *parts.trackers]
    state = SimpleNamespace(start_epoch=0, epoch=0, epochs=0, finished_epochs=0, model=model, epoch_metrics={})
    for hook in hooks:
        hook.before_run(state)
    try:
        metrics = {f"val/{k}": v for k, v in evaluator.evaluate().items()}
        state.epoch_metrics = dict(metrics)
        for hook in hooks:
            hook.after_epoch(state)
            hook.after_run(state)
    except BaseException as error:
        for hook in hooks:
            hook.on_failure(state, error)
        raise
    log.info("evaluated %s: %s", cfg.pretrained, "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    log.info(where_everything_is(context.run_dir, [metrics], parts.trackers))
    return metrics
