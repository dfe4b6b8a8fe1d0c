"""``task=eval pretrained=<file>``: the model ``build_parts`` makes, with the weights of a run's
checkpoint (``checkpoints/best.pt``, ``last.pt``) or thinned model (``thinned/model.pt``, resized by
its recipe), evaluated on the validation split and logged as a run without training: the loop's
own evaluation (the same ``val/...`` metrics as training), logged by the trackers at step 0, the
one evaluation (``metrics.jsonl`` too). A missing or foreign file is one line
(:func:`framework.models.load_pretrained`, run inside ``build_parts``) before any data is read."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from framework.data import build_loaders, limit_batches, load_splits
from framework.process.distributed import SINGLE
from framework.run_context import RunContext
from framework.runner.parts import build_parts
from framework.runner.run_files import eval_files
from framework.runner.summary import where_everything_is
from framework.training.evaluation import classification_loss, evaluate_model

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig, context: RunContext) -> dict[str, float]:
    parts = build_parts(cfg, context, SINGLE)
    bundle = load_splits(parts.data_source, cfg.dataset._target_)
    bundle = limit_batches(bundle, cfg.loader.batch_size, None, cfg.loader.limit_val_batches)
    _, val_loader = build_loaders(
        bundle, batch_size=cfg.loader.batch_size, num_workers=cfg.loader.num_workers, seed=cfg.seed
    )
    trackers = parts.trackers
    trackers.start(0)
    try:
        measured = evaluate_model(parts.model, val_loader, parts.device, classification_loss())
        metrics = {f"val/{k}": v for k, v in measured.items()}
        trackers.log_metrics(metrics, 0)
        trackers.log_files(eval_files(context))
    except BaseException as error:
        trackers.fail(error)
        raise
    trackers.finish()
    log.info("evaluated %s: %s", cfg.pretrained, "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    log.info(where_everything_is(context, [metrics], trackers.where()))
    return metrics
