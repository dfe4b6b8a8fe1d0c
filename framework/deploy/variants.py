"""Build the deployable variants of a model and measure each the same way.

Variants (``VARIANTS``), from the model as trained to what a user deploys:

* ``dense_fp32``: the model before thinning (masked but dense-shaped in a pruned run), eager;
  in a run that thinned, measured when it thinned (``dense_measured``: the model is gone since);
* ``thinned_fp32``: the thinned model, eager (only when the run thinned);
* ``fused_fp32``: the final model in its eager inference form (BatchNorm fused, channels-last
  when that is faster at batch 1: :func:`framework.deploy.fuse.inference_layout`);
* ``fused_onnx_fp32``: the final model (thinned when thinned) with BatchNorm fused
  (:mod:`framework.deploy.fuse`, checked equal to the eval model), exported to ONNX, run by ONNX
  Runtime;
* ``int8_onnx``: that ONNX model statically quantized (:mod:`framework.deploy.quantize`), only
  with ``quantize="int8"``.

Each gets its validation top-1, its size on disk (the ONNX file; for eager models the saved
``state_dict``) and its median latency at batch 1 and at the loader's batch, all variants timed
interleaved in one loop at the same thread count (:func:`framework.analysis.cost.time_interleaved`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from framework.analysis import cost
from framework.analysis.tables import markdown_table, write_csv_table
from framework.deploy.errors import DeployError, require_onnxruntime
from framework.deploy.fuse import check_fused_matches, fuse_batchnorm, inference_layout
from framework.deploy.int8_fallback import Int8Result
from framework.deploy.rules import quantize_problem
from framework.deploy.servable import DEFAULT_MAX_INT8_DROP, ServableChoice, choose_servable

VARIANTS = ("dense_fp32", "thinned_fp32", "fused_fp32", "fused_onnx_fp32", "int8_onnx")
FP32_ONNX = "model.onnx"
INT8_ONNX = "model_int8.onnx"
TABLE = "variants.csv"
COLUMNS = ("variant", "runtime", "val_top1", "bytes", "ms_b1", "ms_batch", "batch")
# ONNX Runtime's kernels round differently from PyTorch's; 1e-4 of the output scale is still
# far below any change of prediction.
ONNX_RTOL = 1e-4

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class DeployResult:
    metrics: dict[str, float]  # deploy/... ready for a tracker
    rows: list[dict]  # one per variant, COLUMNS
    onnx_path: Path  # the fused fp32 model
    int8_path: Path | None = None
    files: list[Path] = field(default_factory=list)  # everything written under out_dir
    servable: ServableChoice | None = None  # the variant served, and why int8 is not (one line each)
    int8: Int8Result | None = None  # how int8 was made: its drop, the layers kept in fp32


def build_deployable(
    final_model: nn.Module,
    sample_shape: Sequence[int],
    out_dir: str | Path,
    val_batches: Iterable[Batch],
    calibration_batches: Iterable[torch.Tensor] = (),
    dense_model: nn.Module | None = None,
    dense_measured: dict[str, float] | None = None,
    quantize: str = "none",
    loader_batch: int = 64,
    threads: int | None = 1,
    timing: tuple[int, int] = (3, 10),
    max_int8_drop: float = DEFAULT_MAX_INT8_DROP,
) -> DeployResult:
    """Fuse, export (and quantize) ``final_model``, then measure every variant.

    ``dense_model``: the model before thinning, when the run thinned (``None``: ``final_model`` is
    the dense model); or ``dense_measured``, its ``val_top1``, ``bytes``, ``ms_b1`` and
    ``ms_batch`` measured earlier (then ``final_model`` is the thinned one). ``val_batches``:
    preprocessed ``(inputs, targets)`` batches (iterated once); ``calibration_batches``: preprocessed
    inputs, used only with ``quantize="int8"``; ``timing``: (warm-up calls, timed repeats) per
    variant and batch size; ``max_int8_drop``: the top-1 int8 may lose against
    the ONNX fp32 model (:func:`~.int8_fallback.quantize_within` keeps the layers that lose most in
    fp32; :func:`~.servable.choose_servable` serves fp32 when int8 still loses more).
    Models are copied to the CPU; the caller's are left as they were.
    """
    problem = quantize_problem(quantize)
    if problem is not None:
        raise DeployError(problem)
    require_onnxruntime("the deployable model (ONNX export)")
    shape = tuple(sample_shape)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = copy.deepcopy(final_model).cpu().eval()
    fused = fuse_batchnorm(final)
    probe = cost.example_input(final, shape, batch_size=3, seed=1)
    metrics = {"deploy/fused_max_error": check_fused_matches(final, fused, probe)}
    val_batches = list(val_batches)  # read by int8's accuracy checks and by every variant's top-1
    int8 = _Int8(calibration_batches, val_batches, max_int8_drop) if quantize == "int8" else None
    exported = _export_onnx(fused, shape, out_dir, probe, int8, threads)
    metrics.update(exported.metrics)
    eager = _eager_variants(final, fused, dense_model, dense_measured, shape, threads)
    # The fused model's weights are sized before its layout is chosen: the channels-last wrapper,
    # picked by timing, renames the state dict's keys, and a size must not depend on a timing.
    sizes = {
        name: float(cost.state_dict_bytes(fused if name == "fused_fp32" else model)) for name, model in eager.items()
    }
    sizes.update({name: float(path.stat().st_size) for name, path in exported.files.items()})
    predictors: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        **{name: _eager_predictor(model) for name, model in eager.items()},
        **{name: _onnx_predictor(session) for name, session in exported.sessions.items()},
    }
    top1 = evaluate_top1(predictors, val_batches)
    latency = _latency(predictors, shape, tuple(dict.fromkeys((1, loader_batch))), threads, *timing)
    rows = []
    if dense_model is None and dense_measured is not None:  # measured when the run thinned
        rows.append(_measured_dense_row(dense_measured, loader_batch))
    for name in (name for name in VARIANTS if name in predictors):
        runtime = "onnxruntime" if name in exported.sessions else "torch eager"
        rows.append(_row(name, runtime, top1[name], sizes[name], latency[name], loader_batch))
    for row in rows:
        metrics.update(row_metrics(row, loader_batch))
    if "int8_onnx" in top1:
        metrics["deploy/int8_top1_drop"] = top1["fused_onnx_fp32"] - top1["int8_onnx"]
    servable = choose_servable(rows, max_int8_drop)
    metrics["deploy/servable_int8"] = float(servable.int8)
    if int8 is not None and int8.result is not None:
        metrics["deploy/int8_fp32_layers"] = float(len(int8.result.kept_fp32))
    table = write_csv_table(COLUMNS, ([row[c] for c in COLUMNS] for row in rows), out_dir / TABLE)
    onnx_path, int8_path = exported.files["fused_onnx_fp32"], exported.files.get("int8_onnx")
    files = [*exported.files.values(), table]
    return DeployResult(metrics, rows, onnx_path, int8_path, files, servable, int8.result if int8 else None)


@dataclass
class _Exported:
    files: dict[str, Path]  # variant -> ONNX file
    sessions: dict[str, object]  # variant -> ONNX Runtime session
    metrics: dict[str, float]


class _Int8:
    """What int8 is made from: calibration inputs, and the validation batches its drop is measured on."""

    def __init__(self, calibration_batches: Iterable[torch.Tensor], val_batches: Sequence[Batch], max_drop: float):
        self.calibration = [x.detach().cpu().float().numpy() for x in calibration_batches]
        self.val_batches = val_batches
        self.max_drop = max_drop
        self.result: Int8Result | None = None

    def top1(self, path: Path, threads: int | None) -> float:
        predictor = _onnx_predictor(cost.onnx_session(path, threads))
        return evaluate_top1({"model": predictor}, self.val_batches)["model"]

    def quantize(self, fp32_path: Path, int8_path: Path, threads: int | None) -> Path:
        from framework.deploy.int8_fallback import quantize_within

        self.result = quantize_within(
            fp32_path,
            int8_path,
            self.calibration,
            lambda path: self.top1(path, threads),
            self.top1(fp32_path, threads),
            self.max_drop,
        )
        return self.result.path


def _export_onnx(fused, shape, out_dir: Path, probe, int8: _Int8 | None, threads) -> _Exported:
    """The fused model as ONNX (checked against the eager one), and its int8 quantization when asked."""
    onnx_path = out_dir / FP32_ONNX
    with warnings.catch_warnings():  # the TorchScript exporter's notes on constant folding are noise here
        warnings.simplefilter("ignore", UserWarning)
        cost.export_onnx(fused, shape, onnx_path)
    sessions = {"fused_onnx_fp32": cost.onnx_session(onnx_path, threads)}
    error = cost.check_onnx_matches(
        fused, sessions["fused_onnx_fp32"], shape, atol=ONNX_RTOL * _output_scale(fused, probe), label="the fused model"
    )
    files = {"fused_onnx_fp32": onnx_path}
    if int8 is not None:
        files["int8_onnx"] = int8.quantize(onnx_path, out_dir / INT8_ONNX, threads)
        sessions["int8_onnx"] = cost.onnx_session(files["int8_onnx"], threads)
    return _Exported(files, sessions, {"deploy/onnx_max_abs_error": error})


def _eager_variants(final, fused, dense_model, dense_measured, shape, threads) -> dict[str, nn.Module]:
    """The eager models to measure: the dense and thinned ones as the run has them, and the fused one."""
    eager: dict[str, nn.Module] = {}
    if dense_model is not None:
        eager["dense_fp32"] = copy.deepcopy(dense_model).cpu().eval()
        eager["thinned_fp32"] = final
    elif dense_measured is not None:
        eager["thinned_fp32"] = final
    else:
        eager["dense_fp32"] = final
    with cost.torch_threads(threads):
        eager["fused_fp32"] = inference_layout(copy.deepcopy(fused), shape, batch=1)
    return eager


def _row(name: str, runtime: str, top1: float, size: float, latency: dict[int, float], loader_batch: int) -> dict:
    return {
        "variant": name,
        "runtime": runtime,
        "val_top1": top1,
        "bytes": int(size),
        "ms_b1": latency[1] * 1e3,
        "ms_batch": latency[loader_batch] * 1e3,
        "batch": loader_batch,
    }


def _measured_dense_row(measured: dict[str, float], loader_batch: int) -> dict:
    return {
        "variant": "dense_fp32",
        "runtime": "torch eager (when thinned)",
        "val_top1": measured["val_top1"],
        "bytes": int(measured["bytes"]),
        "ms_b1": measured["ms_b1"],
        "ms_batch": measured["ms_batch"],
        "batch": loader_batch,
    }


def row_metrics(row: dict, loader_batch: int) -> dict[str, float]:
    """One variant's ``deploy/<what>/<variant>`` metrics (the ``thin/...`` naming: ``_ms_`` marks a time)."""
    name = row["variant"]
    return {
        f"deploy/val_top1/{name}": float(row["val_top1"]),
        f"deploy/bytes/{name}": float(row["bytes"]),
        f"deploy/latency_ms_b1/{name}": float(row["ms_b1"]),
        f"deploy/latency_ms_b{loader_batch}/{name}": float(row["ms_batch"]),
    }


def variants_markdown(rows: Sequence[dict]) -> str:
    shown = [
        [
            r["variant"],
            r["runtime"],
            f"{r['val_top1']:.4f}",
            r["bytes"],
            f"{r['ms_b1']:.3f}",
            f"{r['ms_batch']:.3f}",
            r["batch"],
        ]
        for r in rows
    ]
    return markdown_table(COLUMNS, shown, text_columns=("variant", "runtime"))


def _output_scale(model: nn.Module, inputs: torch.Tensor) -> float:
    with torch.no_grad():
        return max(1.0, float(model(inputs).abs().max()))


def _eager_predictor(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def predict(inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(inputs)

    return predict


def _onnx_predictor(session) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda inputs: cost.run_onnx(session, inputs)


def evaluate_top1(
    predictors: dict[str, Callable[[torch.Tensor], torch.Tensor]], batches: Iterable[Batch]
) -> dict[str, float]:
    """Top-1 accuracy of each predictor over the same batches (read once, shared)."""
    correct = {name: 0 for name in predictors}
    seen = 0
    for inputs, targets in batches:
        inputs = inputs.detach().cpu().float()
        targets = targets.detach().cpu()
        for name, predict in predictors.items():
            correct[name] += int((predict(inputs).argmax(dim=1) == targets).sum())
        seen += len(targets)
    if seen == 0:
        raise DeployError("the deployable model's top-1 needs validation batches; got none")
    return {name: count / seen for name, count in correct.items()}


def _latency(predictors, shape, batches, threads, warmup, repeats) -> dict[str, dict[int, float]]:
    generator = torch.Generator().manual_seed(0)
    feeds = {batch: torch.randn((batch, *shape), generator=generator) for batch in batches}
    runners = {
        (name, batch): (lambda predict=predict, feed=feeds[batch]: predict(feed))
        for name, predict in predictors.items()
        for batch in batches
    }
    with cost.torch_threads(threads):
        samples = cost.time_interleaved(runners, warmup, repeats)
    per_name: dict[str, dict[int, list[float]]] = {}
    for (name, batch), values in samples.items():
        per_name.setdefault(name, {})[batch] = values
    return cost.summarize(per_name)
