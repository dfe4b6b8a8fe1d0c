"""Builds the deployable model at the end of a run and measures it (``deploy.*``).

After the last epoch's evaluation (and after thinning, which runs earlier in the hook list and
reports on the trainer, ``trainer.replacement``): the final model with BatchNorm fused, exported
to ONNX, and with ``deploy.quantize=int8`` quantized by ONNX Runtime on
``deploy.int8_calibration_batches`` training batches, drawn seeded like a data-aware criterion's
calibration batches (the same batches for the same seed, whatever the loader's shuffling did);
when int8 loses more than ``deploy.max_int8_drop`` of top-1 the layers that lose most stay in
fp32 (:mod:`framework.deploy.int8_fallback`), and the servable variant is chosen by one rule
(:mod:`framework.deploy.servable`: ``deploy/servable_int8``, said in the end-of-run block);
every variant's top-1, size on disk and latency go into that epoch's metrics as ``deploy/...``
(so the trackers log them) and into ``<run dir>/deploy/variants.csv``. The ONNX files stay in
``<run dir>/deploy/`` and are left in ``trainer.exports`` for the trackers to log as servable
models. With ``pruner.structure=nm`` the final weights are checked to hold the N:M pattern
(``nm/pattern_ok``).
"""

from __future__ import annotations

import errno
import itertools
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from framework.pruning.budget.latency_table import LatencyTable
from framework.runner.thinning_hook import ThinnedModel
from framework.training.hooks import Hook

log = logging.getLogger(__name__)

# a full disk, a file over the size limit, a full quota
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)

# Latency in a run is a check, not a benchmark (bench/deploy.py does more): few repeats, so the
# deploy step costs a fraction of an epoch.
RUN_LATENCY_REPEATS = 5
# the deploy step times its variants on one thread (a served model's worker, and comparable across runs)
DEPLOY_THREADS = 1


class DeployHook(Hook):
    def __init__(
        self,
        quantize: str,
        int8_calibration_batches: int,
        input_shape: Sequence[int],
        out_dir: str | Path,
        batch_size: int,
        seed: int,
        nm: tuple[int, int] | None = None,
        parameter_names: Sequence[str] = (),
        builds: bool = True,
        required: bool = False,
        max_int8_drop: float = 0.005,
        latency_table: LatencyTable | None = None,
    ):
        """``builds``: deploy.enabled on rank 0 (false leaves only the N:M check); ``nm`` and
        ``parameter_names``: the N:M pattern the pruner promised on those weights; ``required``:
        a model the step cannot build fails the run (once the last epoch is saved) instead of
        skipping the step; ``latency_table``: the table whose prediction for the thinned model is
        logged beside the variant it describes (:func:`framework.deploy.latency_check.deploy_prediction`)."""
        self.quantize = quantize
        self.int8_calibration_batches = int8_calibration_batches
        self.input_shape = tuple(input_shape)
        self.out_dir = Path(out_dir)
        self.batch_size = batch_size
        self.seed = seed
        self.nm = nm
        self.parameter_names = list(parameter_names)
        self.builds = builds
        self.required = required
        self.failure: str | None = None  # why the step could not build the model, for after_run
        self.max_int8_drop = max_int8_drop
        self.latency_table = latency_table

    def after_epoch(self, trainer) -> None:
        if not trainer.is_last_epoch:
            return
        if self.nm is not None:
            from framework.pruning.nm import check_nm_pattern

            check_nm_pattern(trainer.model, self.parameter_names, *self.nm)
            trainer.epoch_metrics["nm/pattern_ok"] = 1.0
        if not self.builds:
            return
        from framework.deploy.variants import build_deployable, variants_markdown
        from framework.tracking.model_export import INT8_MODEL_DIR, MODEL_DIR

        thinned = trainer.replacement if isinstance(trainer.replacement, ThinnedModel) else None
        log.info(
            "deploy step: fusing BatchNorm, exporting to ONNX%s, then timing every variant",
            f", quantizing to int8 on {self.int8_calibration_batches} batches" if self.quantize == "int8" else "",
        )
        try:
            result = build_deployable(
                trainer.model,
                self.input_shape,
                self.out_dir,
                trainer.val_loader,
                calibration_batches=self.calibration_inputs(trainer) if self.quantize == "int8" else (),
                dense_measured=thinned.dense_measured if thinned is not None else None,
                quantize=self.quantize,
                loader_batch=self.batch_size,
                threads=DEPLOY_THREADS,
                timing=(1, RUN_LATENCY_REPEATS),
                max_int8_drop=self.max_int8_drop,
            )
        except Exception as error:  # an optional step: the trained model is not lost to it
            self._skip(trainer, error)
            return
        trainer.epoch_metrics.update(result.metrics)
        if self.latency_table is not None and thinned is not None and thinned.predicted_ms is not None:
            from framework.deploy.latency_check import deploy_prediction

            trainer.epoch_metrics.update(deploy_prediction(self.latency_table, thinned.predicted_ms, DEPLOY_THREADS))
        if result.int8 is not None and result.int8.kept_fp32:
            log.info("int8: %s kept in fp32 (they lose most when quantized)", ", ".join(result.int8.kept_fp32))
        for note in result.servable.notes if result.servable is not None else ():
            log.warning("%s", note)
        trainer.exports[MODEL_DIR] = result.onnx_path
        if result.int8_path is not None:
            trainer.exports[INT8_MODEL_DIR] = result.int8_path
        log.info("deployable model (%s):\n%s", self.out_dir, variants_markdown(result.rows))

    def _skip(self, trainer, error: Exception) -> None:
        """The step could not build the deployable model (an op ONNX cannot export, most often):
        one line naming why; the epoch's metrics, checkpoint and tracking go on as usual (they come
        after this hook), and with ``deploy.required=true`` the run fails once they are done."""
        from framework.errors import short_reason

        self.failure = (
            f"the deploy step could not build the deployable model ({type(error).__name__}: "
            f"{short_reason(error, 240)}); the trained model is saved (checkpoints/last.pt)"
        )
        trainer.epoch_metrics["deploy/skipped"] = 1.0
        if isinstance(error, OSError) and error.errno in DISK_FULL:  # not the model's fault: say what to free
            self.failure = (
                f"the deploy step could not write to {self.out_dir}: the disk is full ([Errno {error.errno}] "
                f"{error.strerror}); free disk space (the checkpoint and metrics are written next)"
            )
        if not self.required:
            log.warning(
                "%s; deploy step skipped (deploy.enabled=false leaves it out, deploy.required=true fails the run)",
                self.failure,
            )

    def after_run(self, trainer) -> None:
        if self.failure is not None and self.required:
            from framework.deploy.errors import DeployError

            raise DeployError(f"{self.failure}; deploy.required=true (deploy.enabled=false leaves the step out)")

    def calibration_inputs(self, trainer) -> Iterator[torch.Tensor]:
        """The first ``int8_calibration_batches`` of the training split, shuffled with a generator
        of their own seeded from ``seed`` (the loader's generator is left as it was)."""
        from framework.data.loaders import training_split
        from framework.pruning.scores.calibration import seeded_batches

        draw = seeded_batches(training_split(trainer.train_loader), self.batch_size, self.seed)
        batches = draw(float(trainer.epoch))
        return (inputs for inputs, _ in itertools.islice(batches, self.int8_calibration_batches))
