"""Builds the deployable model at the end of a run and measures it (``deploy.*``).

After the last epoch's evaluation (and after thinning, which runs earlier in the hook list): the
final model with BatchNorm fused, exported to ONNX, and with ``deploy.quantize=int8`` quantized
by ONNX Runtime on ``deploy.calibration_batches`` training batches; every variant's top-1, size on
disk and latency go into that epoch's metrics as ``deploy/...`` (so the trackers log them) and
into ``<run dir>/deploy/variants.csv``. The ONNX files stay in ``<run dir>/deploy/``, where the
tracker finds them to log the servable model. With ``pruner.structure=nm`` the final weights are
checked to hold the N:M pattern (``nm/pattern_ok``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path

from framework.training.hooks import Hook

log = logging.getLogger(__name__)

# Latency in a run is a check, not a benchmark (bench/deploy.py does more): few repeats, so the
# deploy step costs a fraction of an epoch.
RUN_LATENCY_REPEATS = 5


class DeployHook(Hook):
    def __init__(
        self,
        quantize: str,
        calibration_batches: int,
        input_shape: Sequence[int],
        out_dir: str | Path,
        batch_size: int,
        thinning_hook=None,
        pruner=None,
        builds: bool = True,
        writes_files: bool = True,
    ):
        self.quantize = quantize
        self.calibration_batches = calibration_batches
        self.input_shape = tuple(input_shape)
        self.out_dir = Path(out_dir)
        self.batch_size = batch_size
        self.thinning_hook = thinning_hook
        self.pruner = pruner
        self.builds = builds  # deploy.enabled: false leaves only the N:M check
        self.writes_files = writes_files
        self.result = None

    def after_epoch(self, trainer) -> None:
        if trainer.epoch != trainer.epochs - 1:
            return
        nm = self.pruner.nm if self.pruner is not None else None
        if nm is not None:
            from framework.pruning.nm import check_nm_pattern

            check_nm_pattern(trainer.model, self.pruner.parameter_names, *nm)
            trainer.epoch_metrics["nm/pattern_ok"] = 1.0
        if not (self.builds and self.writes_files):
            return
        from framework.deploy.variants import build_deployable, variants_markdown

        thinned = self.thinning_hook is not None and self.thinning_hook.recipe is not None
        dense = self.thinning_hook.dense_measured if thinned else None
        calibration = (inputs for inputs, _ in itertools.islice(trainer.train_loader, self.calibration_batches))
        self.result = build_deployable(
            trainer.model,
            self.input_shape,
            self.out_dir,
            trainer.val_loader,
            calibration_batches=calibration if self.quantize == "int8" else (),
            dense_measured=dense,
            quantize=self.quantize,
            loader_batch=self.batch_size,
            warmup=1,
            repeats=RUN_LATENCY_REPEATS,
        )
        trainer.epoch_metrics.update(self.result.metrics)
        log.info("deployable model (%s):\n%s", self.out_dir, variants_markdown(self.result.rows))
