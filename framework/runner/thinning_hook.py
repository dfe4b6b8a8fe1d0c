"""Makes a run's masked model physically smaller (``pruner.thin``), measures it and saves it.

Thinning happens once, at the end of an epoch, after that epoch's evaluation:

* ``pruner.thin=after_pruning``: at the last scheduled pruning epoch, so the remaining epochs
  fine-tune the small model. The optimizer's state (SGD momentum, Adam moments) is thinned with
  the weights; the lr scheduler keeps its state and now drives the new optimizer.
* ``pruner.thin=end``: at the last epoch (the planned one, or the one early stopping ends the run at).

The thinned model replaces the trainer's model (``trainer.replace_model``, with a
:class:`ThinnedModel` as the report the pruning and deploy hooks read), so the checkpoint written
after that epoch holds the small model with the recipe that rebuilds its architecture (this hook's
state), and a resumed run continues it. The epoch's metrics gain ``thin/val_top1`` (the thinned
model evaluated on the validation set), params, MACs (``torch.utils.flop_counter``), file sizes and
the measured latency of the masked-dense and the thinned model (eager PyTorch and, when onnx and
onnxruntime are installed, ONNX Runtime; interleaved, median). The files go to ``<run dir>/thinned/``:
``model.pt`` (state_dict + recipe, loads with ``weights_only=True``: see
:func:`framework.pruning.thinning.thin.load_thinned`) and ``model.onnx``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from framework.errors import StorageError
from framework.pruning.budget.latency_table import LatencyTable
from framework.pruning.thinning.thin import CHECKPOINT_KEY
from framework.training.checkpoint import storage_cause
from framework.training.hooks import Hook

log = logging.getLogger(__name__)

# Latency in a run is a check, not a benchmark: a few interleaved repeats (bench/thinning.py does more).
RUN_LATENCY_REPEATS = 10


# what ThinningHook writes in its folder (the ONNX files under their names during the export, and
# save_thinned's temporary file)
THINNING_FILES = ("model.pt", "model.onnx", "thinned.onnx", "dense.onnx")


def remove_thinning_files(out_dir: Path) -> list[Path]:
    """Delete the files a failed write of the thinned model left in ``out_dir``; those removed."""
    removed = []
    if out_dir.is_dir():
        for path in [*(out_dir / name for name in THINNING_FILES), *out_dir.glob("*.tmp")]:
            try:
                if path.is_file():
                    path.unlink()
                    removed.append(path)
            except OSError:
                pass  # cannot remove it (read-only): the error line still says what failed
    return removed


@dataclass
class ThinnedModel:
    """What thinning reports on the trainer (``trainer.replacement``): the recipe that rebuilds the
    small model's architecture, the epoch it was thinned after, and the masked model's top-1, size
    and latency when it was thinned (rank 0; the deploy step's dense variant)."""

    recipe: dict[str, Any]
    epoch: int
    dense_measured: dict[str, float] | None = None
    predicted_ms: float | None = None  # the latency table's prediction for the thinned model


class ThinningHook(Hook):
    name = CHECKPOINT_KEY  # the reader of this state is framework.pruning.thinning.thin.thinning_recipe

    def __init__(
        self,
        pruner,
        when: str,
        input_shape: Sequence[int],
        out_dir: str | Path,
        batch_size: int = 32,
        writes_files: bool = True,
        latency_table: LatencyTable | None = None,
    ):
        """``writes_files``: with several processes every rank thins (the masks are equal, so the
        small models are too) and evaluates its shard; only rank 0 saves and measures the model.
        ``latency_table``: the thinned model's latency is predicted by it and measured as it was
        measured (:func:`framework.deploy.latency_check.prediction_check`)."""
        self.pruner = pruner
        self.when = when
        self.input_shape = tuple(input_shape)
        self.out_dir = Path(out_dir)
        self.batch_size = batch_size
        self.writes_files = writes_files
        self.latency_table = latency_table
        self.thinned: ThinnedModel | None = None  # part of the state: a resumed run reports the same

    def is_thin_epoch(self, trainer) -> bool:
        """Whether the model is thinned after this epoch's evaluation: the run's last epoch (the
        planned one, or an early stop), or with ``after_pruning`` the schedule's last epoch."""
        if self.when == "after_pruning" and trainer.epoch == self.pruner.schedule.last_epoch:
            return True
        return trainer.is_last_epoch

    def before_run(self, trainer) -> None:
        if self.thinned is not None:  # resumed after thinning: the model was rebuilt small already
            trainer.replacement = self.thinned

    def after_epoch(self, trainer) -> None:
        if self.thinned is None and self.is_thin_epoch(trainer):
            self.thin(trainer)

    def thin(self, trainer) -> None:
        from framework.pruning.thinning.thin import thin

        masked = trainer.model
        log.info("thinning at epoch %d: removing the pruned channels and rebuilding the layers", trainer.epoch + 1)
        device = next(masked.parameters()).device
        example = torch.zeros(2, *self.input_shape, device=device)
        result = thin(masked, self.pruner.masks, example_input=example, optimizer=trainer.optimizer)
        masked_top1 = trainer.epoch_metrics.get("val/top1")

        # The masks belong to the old tensors: the pruning hook stops masking and reports on `masked`.
        self.thinned = ThinnedModel(result.recipe, trainer.epoch)
        trainer.replace_model(result.model, result.optimizer, self.thinned)

        metrics = trainer.epoch_metrics
        metrics["thin/val_top1"] = trainer.evaluate()["top1"]
        metrics["thin/removed_channels"] = float(result.removed_channels)
        if not self.writes_files:
            return
        try:
            self._write_files(trainer, result, masked, masked_top1)
        except BaseException as error:
            # Nothing half-written stays: this epoch's checkpoint is not written either, so
            # resume=auto thins again from the checkpoint before it and writes every file whole.
            removed = remove_thinning_files(self.out_dir)
            cause = storage_cause(error)
            if cause is None:
                raise
            raise StorageError(
                f"cannot write the thinned model in {self.out_dir} ({cause}); "
                f"{'its partial files are removed' if removed else 'nothing was written'} and the last "
                "checkpoint is from before thinning; free disk space, then continue with resume=auto"
            ) from None

    def _write_files(self, trainer, result, masked, masked_top1) -> None:
        from framework.analysis.cost import cost_report
        from framework.pruning.thinning.thin import save_thinned

        metrics = trainer.epoch_metrics
        self.out_dir.mkdir(parents=True, exist_ok=True)
        thinned_cpu = _cpu_copy(result.model)
        save_thinned(self.out_dir / "model.pt", thinned_cpu, result.recipe)
        onnx_dir = self.out_dir if _onnx_available() else None
        if onnx_dir is None:
            log.warning("ONNX export skipped: onnx and onnxruntime are not installed (pip install 'secateurs[onnx]')")
        log.info(
            "thinning: measuring the masked and the thinned model (params, MACs, latency%s)",
            ", ONNX export" if onnx_dir is not None else "",
        )
        with warnings.catch_warnings():  # the ONNX exporter's notes on constant folding are noise here
            warnings.simplefilter("ignore", UserWarning)
            report = cost_report(
                _cpu_copy(masked),
                thinned_cpu,
                self.input_shape,
                batch=self.batch_size,
                repeats=RUN_LATENCY_REPEATS,
                onnx_dir=onnx_dir,
            )
        metrics.update({key: float(value) for key, value in report.items()})
        metrics["thin/model_bytes"] = float((self.out_dir / "model.pt").stat().st_size)
        assert self.thinned is not None  # set by thin() before the files are written
        self.thinned.dense_measured = {
            "val_top1": float(masked_top1) if masked_top1 is not None else float("nan"),
            "bytes": float(report["thin/state_dict_bytes/dense"]),
            "ms_b1": float(report["thin/eager_ms_b1/dense"]),
            "ms_batch": float(report[f"thin/eager_ms_b{self.batch_size}/dense"]),
        }
        if self.latency_table is not None:
            self._check_prediction(metrics, masked, thinned_cpu)
        if onnx_dir is not None:
            (self.out_dir / "thinned.onnx").replace(self.out_dir / "model.onnx")
            (self.out_dir / "dense.onnx").unlink(missing_ok=True)
        log.info(
            "thinned at epoch %d: params %d -> %d, MACs %d -> %d, eager speedup x%.2f (batch 1), "
            "val/top1 masked %.4f, thinned %.4f",
            trainer.epoch + 1,
            report["thin/params/dense"],
            report["thin/params/thinned"],
            report["thin/macs/dense"],
            report["thin/macs/thinned"],
            report["thin/eager_speedup_b1"],
            masked_top1 if masked_top1 is not None else float("nan"),
            metrics["thin/val_top1"],
        )

    def _check_prediction(self, metrics: dict[str, float], masked, thinned_cpu) -> None:
        """The table's prediction for the thinned model beside its measurement (one log line)."""
        from framework.deploy.latency_check import prediction_check

        table = self.latency_table
        assert table is not None and self.thinned is not None
        # a latency allocation checked by measuring (budget/remeasure) predicts with its correction
        correction = self.pruner.latency_correction()
        check = prediction_check(
            table, _cpu_copy(masked), thinned_cpu, self.input_shape, repeats=RUN_LATENCY_REPEATS, correction=correction
        )
        if not check:
            log.warning("latency: the thinned model's groups are not the latency table's; no prediction to check")
            return
        metrics.update(check)
        self.thinned.predicted_ms = check["latency/predicted_ms/thinned"]
        log.info(
            "latency of the thinned model (%s, %d thread(s), batch %d): predicted %.3g ms, measured %.3g ms (%+.1f %%)",
            table.runtime,
            table.threads,
            table.batch,
            check["latency/predicted_ms/thinned"],
            check["latency/measured_ms/thinned"],
            100 * check["latency/error/thinned"],
        )

    def state_dict(self) -> dict[str, Any]:
        thinned = self.thinned
        if thinned is None:
            return {"recipe": None, "thinned_at": None, "dense_measured": None, "predicted_ms": None}
        return {
            "recipe": thinned.recipe,
            "thinned_at": thinned.epoch,
            "dense_measured": thinned.dense_measured,
            "predicted_ms": thinned.predicted_ms,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        recipe = state.get("recipe")
        self.thinned = (
            None
            if recipe is None
            else ThinnedModel(
                recipe, state.get("thinned_at", 0), state.get("dense_measured"), state.get("predicted_ms")
            )
        )


def _onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).cpu()
