"""Measured cost of a model: parameters, MACs, eager and ONNX Runtime latency, file sizes.

What a user of structured pruning wants to know is what the smaller network costs, counted by a
maintained tool and timed on the machine, not an estimate per layer. Everything here works on a
plain ``nn.Module`` (dense, masked or thinned alike); :func:`cost_report` puts a dense and a
thinned model side by side as a flat dict of ``thin/...`` metrics ready for MLflow.

Shapes: every function takes ``sample_shape``, the shape of **one** input sample without the
batch dimension (``(3, 32, 32)``); batch sizes are separate arguments.

MACs come from :class:`torch.utils.flop_counter.FlopCounterMode` (maintained in PyTorch). It
counts the matrix-multiply-like ATen ops: convolutions (grouped, depthwise and transposed
included), ``mm``/``addmm``/``bmm``/``matmul`` (so ``nn.Linear``) and attention; their FLOPs are
``2 x`` multiply-accumulates, so MACs = FLOPs / 2. Not counted: bias additions, BatchNorm,
activations, pooling, residual adds, concatenation. Those element-wise ops cost little arithmetic
but real memory traffic, one reason a MAC reduction does not turn into the same latency speedup.

onnx and onnxruntime are imported only by the ONNX functions, so the rest works without them.
Export uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): with torch
2.14 the default dynamo exporter needs the ``onnxscript`` package, which this project does not
install; the legacy one needs nothing more and handles every model we thin.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from framework.errors import SecateursError

ONNX_INPUT = "input"
ONNX_OUTPUT = "output"
DEFAULT_ONNX_OPSET = 17


class MeasurementError(SecateursError):
    """A measurement cannot be made as asked (bad shape or count, missing package, mismatch)."""


# --- arguments ---------------------------------------------------------------------------------


def _check_shape(sample_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(sample_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise MeasurementError(
            f"sample_shape must be one sample's shape without the batch dimension, positive integers "
            f"such as (3, 32, 32); got {sample_shape!r}"
        )
    return shape


def _check_positive(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or value < minimum:
        raise MeasurementError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _check_batch_sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(batch_sizes)
    if not sizes or not all(isinstance(b, int) and b >= 1 for b in sizes):
        raise MeasurementError(f"batch_sizes must be integers >= 1, at least one; got {batch_sizes!r}")
    return tuple(dict.fromkeys(sizes))  # keep order, drop repeats


def example_input(model: nn.Module, sample_shape: Sequence[int], batch_size: int = 1, seed: int = 0) -> torch.Tensor:
    """A reproducible standard-normal batch on the model's device and in its dtype."""
    first = next(model.parameters(), None)
    dtype = first.dtype if first is not None else torch.get_default_dtype()
    device = first.device if first is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((batch_size, *_check_shape(sample_shape)), generator=generator, dtype=dtype).to(device)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd for the block; every module's own train/eval flag is restored
    afterwards (a frozen BatchNorm inside a training model stays frozen)."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for module, training in modes.items():
            module.train(training)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block (``None``: leave it), restored afterwards."""
    if threads is None:
        yield
        return
    _check_positive("threads", threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- size ---------------------------------------------------------------------------------------


def count_params(model: nn.Module) -> int:
    """Number of parameter elements; a parameter shared by several modules counts once. Buffers
    (BatchNorm running statistics, masks) are not parameters and are not counted."""
    return sum(p.numel() for p in model.parameters())


def state_dict_bytes(model: nn.Module) -> int:
    """Size in bytes of ``torch.save(model.state_dict())``, what a checkpoint of the weights takes
    on disk (buffers included). Serialised in memory: nothing is written."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def file_bytes(path: str | Path) -> int:
    """Size of a file on disk, in bytes."""
    return Path(path).stat().st_size


# --- MACs ---------------------------------------------------------------------------------------


def _flop_counts(model: nn.Module, sample_shape: Sequence[int], batch_size: int) -> dict[str, dict[Any, int]]:
    _check_positive("batch_size", batch_size)
    inputs = example_input(model, sample_shape, batch_size)
    counter = FlopCounterMode(display=False)
    with evaluating(model), unfused_attention(), counter:
        model(inputs)
    return counter.get_flop_counts()


@contextmanager
def unfused_attention() -> Iterator[None]:
    """nn.MultiheadAttention without its eval fast path: one fused op that the flop counter does not
    count and ONNX cannot export; the unfused path computes the same function from counted ops."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def count_macs(model: nn.Module, sample_shape: Sequence[int], batch_size: int = 1) -> int:
    """Multiply-accumulates of one eval forward pass on a batch of ``batch_size`` samples of
    ``sample_shape`` (see the module docstring for what counts). The model's train/eval flags and
    BatchNorm statistics are left as they were."""
    counts = _flop_counts(model, sample_shape, batch_size)
    return sum(counts.get("Global", {}).values()) // 2


def macs_by_module(model: nn.Module, sample_shape: Sequence[int], batch_size: int = 1) -> dict[str, int]:
    """MACs done by each module itself (not by its children), keyed by qualified name (``""`` for
    the root), in the order the counter first saw them; modules with no MACs are left out. A
    module called several times sums its calls. The values add up to :func:`count_macs`."""
    counts = _flop_counts(model, sample_shape, batch_size)
    # The counter names modules "<RootClass>.<qualified name>" and credits every enclosing
    # module too; a module's own share is its total less its direct children's.
    root = type(model).__name__
    totals = {name: sum(ops.values()) for name, ops in counts.items() if name == root or name.startswith(root + ".")}
    children: dict[str, list[str]] = {name: [] for name in totals}
    for name in totals:
        if name != root:
            parent = name.rsplit(".", 1)[0]
            if parent in children:
                children[parent].append(name)
    own = {}
    for name, total in totals.items():
        flops = total - sum(totals[child] for child in children[name])
        if flops:
            own["" if name == root else name[len(root) + 1 :]] = flops // 2
    unattributed = sum(counts.get("Global", {}).values()) // 2 - sum(own.values())
    if unattributed:  # work done outside any module call, e.g. a functional op in a hook
        own["<outside modules>"] = unattributed
    return own


# --- eager latency ------------------------------------------------------------------------------


def time_interleaved(
    runners: Mapping[tuple[str, int], Callable[[], object]], warmup: int, repeats: int
) -> dict[tuple[str, int], list[float]]:
    """Wall seconds of each runner, ``repeats`` calls each after ``warmup`` untimed calls.

    Runners are interleaved: every round calls each once, the order rotating by one per round, so
    a slow spell of a noisy machine hits every variant alike instead of the one that ran then.
    """
    _check_positive("warmup", warmup, minimum=0)
    _check_positive("repeats", repeats)
    keys = list(runners)
    for _ in range(warmup):
        for key in keys:
            runners[key]()
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in keys}
    for round_index in range(repeats):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            runners[key]()
            samples[key].append(time.perf_counter() - start)
    return samples


def summarize(
    samples: Mapping[str, Mapping[int, Sequence[float]]], quantile: float = 0.5
) -> dict[str, dict[int, float]]:
    """``{name: {batch: seconds}}`` at ``quantile`` of each list of samples (0.5: the median; a
    low one such as 0.1 approaches the uncontended cost when other work shares the cores)."""
    if not 0.0 <= quantile <= 1.0:
        raise MeasurementError(f"quantile must be within [0, 1]; got {quantile!r}")
    result: dict[str, dict[int, float]] = {}
    for name, per_batch in samples.items():
        for batch, values in per_batch.items():
            ordered = sorted(values)
            position = quantile * (len(ordered) - 1)  # linear interpolation between neighbours
            low = int(position)
            high = min(low + 1, len(ordered) - 1)
            result.setdefault(name, {})[batch] = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return result


def _by_name(samples: Mapping[tuple[str, int], list[float]]) -> dict[str, dict[int, list[float]]]:
    result: dict[str, dict[int, list[float]]] = {}
    for (name, batch), values in samples.items():
        result.setdefault(name, {})[batch] = values
    return result


def latency_samples(
    models: Mapping[str, nn.Module],
    sample_shape: Sequence[int],
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
) -> dict[str, dict[int, list[float]]]:
    """Seconds of each timed eager forward pass: ``{model name: {batch size: [seconds, ...]}}``.

    Every model runs in eval mode without autograd on a fixed random batch on its own device (a
    CUDA pass is timed until its kernels finish); all (model, batch) pairs are interleaved in one loop (:func:`time_interleaved`). ``threads`` sets
    ``torch.set_num_threads`` for the measurement (``None`` leaves it as it is).
    """
    if not models:
        raise MeasurementError("measuring latency needs at least one model; got none")
    sizes = _check_batch_sizes(batch_sizes)
    with torch_threads(threads), ExitStack() as stack:
        for model in models.values():
            stack.enter_context(evaluating(model))
        runners = {}
        for name, model in models.items():
            for batch in sizes:
                inputs = example_input(model, sample_shape, batch)
                runners[(name, batch)] = _forward_runner(model, inputs)
        return _by_name(time_interleaved(runners, warmup, repeats))


def _forward_runner(model: nn.Module, inputs: torch.Tensor) -> Callable[[], object]:
    if inputs.device.type != "cuda":
        return lambda: model(inputs)

    def run_and_wait():  # CUDA launches are asynchronous: the clock must wait for the kernels
        output = model(inputs)
        torch.cuda.synchronize(inputs.device)
        return output

    return run_and_wait


def measure_latency(
    models: Mapping[str, nn.Module],
    sample_shape: Sequence[int],
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
) -> dict[str, dict[int, float]]:
    """Median seconds of one eager forward pass: ``{model name: {batch size: seconds}}``
    (:func:`latency_samples` summarized by :func:`summarize`)."""
    return summarize(latency_samples(models, sample_shape, batch_sizes, warmup, repeats, threads))


# --- ONNX ---------------------------------------------------------------------------------------


def _require(package: str):
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise MeasurementError(
            f"ONNX measurements need the '{package}' package, which is not installed ({error}); "
            "install onnx and onnxruntime or leave ONNX out"
        ) from None


def export_onnx(
    model: nn.Module, sample_shape: Sequence[int], path: str | Path, opset: int = DEFAULT_ONNX_OPSET
) -> Path:
    """Export ``model`` (in eval mode) to ONNX at ``path`` with a dynamic batch axis (input
    ``"input"``, output ``"output"``); returns the path. The model's flags are restored."""
    _require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_input(model, sample_shape, batch_size=2)
    with evaluating(model), unfused_attention(), warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation on every call; see the module docstring.
        warnings.simplefilter("ignore", DeprecationWarning)
        # torch._assert on shapes (torchvision's ViT) is traced as a constant check: expected, not news
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        _export(model, inputs, path, opset)
    return path


def _export(model: nn.Module, inputs: torch.Tensor, path: Path, opset: int) -> None:
    torch.onnx.export(
        model,
        (inputs,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=[ONNX_INPUT],
        output_names=[ONNX_OUTPUT],
        dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
    )


def onnx_session(path: str | Path, threads: int | None = 1):
    """An ONNX Runtime CPU session for ``path``; ``threads`` bounds its intra-op threads (and the
    inter-op ones to 1) so it competes on equal terms with eager PyTorch at the same count."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads is not None:
        _check_positive("threads", threads)
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, inputs: torch.Tensor) -> torch.Tensor:
    """Run an ONNX Runtime ``session`` (from :func:`export_onnx`'s file) on a CPU tensor."""
    (output,) = session.run([ONNX_OUTPUT], {ONNX_INPUT: inputs.detach().cpu().numpy()})
    return torch.from_numpy(output)


def onnx_max_abs_error(model: nn.Module, session, sample_shape: Sequence[int], batch_size: int = 3) -> float:
    """Largest absolute difference between the ONNX Runtime output and the eager eval output on a
    random batch (a batch size other than the export's 2, to exercise the dynamic axis)."""
    inputs = example_input(model, sample_shape, batch_size, seed=1)
    with evaluating(model):
        expected = model(inputs).detach().cpu()
    got = run_onnx(session, inputs)
    if got.shape != expected.shape:
        raise MeasurementError(f"ONNX output shape {tuple(got.shape)} differs from eager {tuple(expected.shape)}")
    return float((got.to(expected.dtype) - expected).abs().max())


def check_onnx_matches(
    model: nn.Module, session, sample_shape: Sequence[int], atol: float = 1e-4, label: str = "model"
) -> float:
    """:func:`onnx_max_abs_error`, raising :class:`MeasurementError` when it exceeds ``atol``."""
    error = onnx_max_abs_error(model, session, sample_shape)
    if not error <= atol:  # also catches NaN
        raise MeasurementError(
            f"ONNX Runtime output of {label} differs from eager PyTorch by {error:.3g} (allowed: <= {atol:g})"
        )
    return error


def onnx_latency_samples(
    sessions: Mapping[str, Any],
    sample_shape: Sequence[int],
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 3,
    repeats: int = 10,
) -> dict[str, dict[int, list[float]]]:
    """Seconds of each timed ONNX Runtime run, per session and batch size, interleaved like
    :func:`latency_samples`. ``sessions`` maps names to :func:`onnx_session` results (their thread
    count was set there); inputs are float32."""
    if not sessions:
        raise MeasurementError("measuring ONNX latency needs at least one session; got none")
    sizes = _check_batch_sizes(batch_sizes)
    shape = _check_shape(sample_shape)
    generator = torch.Generator().manual_seed(0)
    feeds = {batch: torch.randn((batch, *shape), generator=generator).numpy() for batch in sizes}
    runners = {
        (name, batch): (lambda session=session, feed=feeds[batch]: session.run([ONNX_OUTPUT], {ONNX_INPUT: feed}))
        for name, session in sessions.items()
        for batch in sizes
    }
    return _by_name(time_interleaved(runners, warmup, repeats))


def onnx_latency(
    sessions: Mapping[str, Any],
    sample_shape: Sequence[int],
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 3,
    repeats: int = 10,
) -> dict[str, dict[int, float]]:
    """Median seconds of one ONNX Runtime run: :func:`onnx_latency_samples` summarized."""
    return summarize(onnx_latency_samples(sessions, sample_shape, batch_sizes, warmup, repeats))


# --- the report ---------------------------------------------------------------------------------


def cost_report(
    dense_model: nn.Module,
    thinned_model: nn.Module,
    sample_shape: Sequence[int],
    batch: int = 32,
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = 1,
    onnx_dir: str | Path | None = None,
    onnx_atol: float = 1e-4,
) -> dict[str, float]:
    """Dense vs thinned, as one flat dict of MLflow metrics (all ``thin/...``):

    * ``thin/params/{dense,thinned}``, ``thin/params_ratio`` (thinned / dense);
    * ``thin/macs/{dense,thinned}`` per sample, ``thin/macs_reduction`` (dense / thinned);
    * ``thin/eager_ms_b{1,batch}/{dense,thinned}`` (median ms per forward pass) and
      ``thin/eager_speedup_b{1,batch}`` (dense / thinned);
    * ``thin/state_dict_bytes/{dense,thinned}``;
    * with ``onnx_dir``: both models are exported there (``dense.onnx``, ``thinned.onnx``), each
      checked equal to its eager outputs within ``onnx_atol``, and
      ``thin/onnx_ms_b{1,batch}/{dense,thinned}``, ``thin/onnx_speedup_b{1,batch}``,
      ``thin/onnx_bytes/{dense,thinned}``, ``thin/onnx_max_abs_error/{dense,thinned}`` are added.

    ``threads`` applies to eager PyTorch and ONNX Runtime alike (1 by default: the figure that is
    least disturbed by other work on the machine).
    """
    _check_positive("batch", batch)
    models = {"dense": dense_model, "thinned": thinned_model}
    sizes = _check_batch_sizes((1, batch))
    metrics: dict[str, float] = {}
    for variant, model in models.items():
        metrics[f"thin/params/{variant}"] = count_params(model)
        metrics[f"thin/macs/{variant}"] = count_macs(model, sample_shape)
        metrics[f"thin/state_dict_bytes/{variant}"] = state_dict_bytes(model)
    metrics["thin/params_ratio"] = _ratio(metrics["thin/params/thinned"], metrics["thin/params/dense"])
    metrics["thin/macs_reduction"] = _ratio(metrics["thin/macs/dense"], metrics["thin/macs/thinned"])

    eager = measure_latency(models, sample_shape, sizes, warmup, repeats, threads)
    _add_latency(metrics, "eager", eager, sizes)

    if onnx_dir is not None:
        sessions = {}
        for variant, model in models.items():
            path = export_onnx(model, sample_shape, Path(onnx_dir) / f"{variant}.onnx")
            sessions[variant] = onnx_session(path, threads)
            metrics[f"thin/onnx_bytes/{variant}"] = file_bytes(path)
            metrics[f"thin/onnx_max_abs_error/{variant}"] = check_onnx_matches(
                model, sessions[variant], sample_shape, onnx_atol, label=f"the {variant} model"
            )
        _add_latency(metrics, "onnx", onnx_latency(sessions, sample_shape, sizes, warmup, repeats), sizes)
    return metrics


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def _add_latency(metrics: dict[str, float], runtime: str, medians: dict[str, dict[int, float]], sizes) -> None:
    for batch in sizes:
        for variant in ("dense", "thinned"):
            metrics[f"thin/{runtime}_ms_b{batch}/{variant}"] = medians[variant][batch] * 1e3
        metrics[f"thin/{runtime}_speedup_b{batch}"] = _ratio(medians["dense"][batch], medians["thinned"][batch])
