"""A latency table's prediction checked against the model it describes, measured here.

After thinning, the run knows the thinned model's widths; the table predicts its latency, and this
module measures it the way the table was measured (BatchNorm fused, in the table's runtime, thread
count and batch), interleaved with the dense model, so a user sees at once how far the prediction
the allocation trusted is from the time they will wait.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from framework.analysis import cost
from framework.deploy.fuse import fuse_batchnorm
from framework.deploy.latency_measure import model_at_widths, model_runner, relative_times, time_runners
from framework.pruning.budget.latency_table import LatencyTable, named_groups
from framework.pruning.graph.dependency import build_dependency_graph

# which deploy variant a table's runtime describes: the model BatchNorm-fused, in that runtime
DEPLOY_VARIANT = {"eager": "fused_fp32", "onnx_fp32": "fused_onnx_fp32", "onnx_int8": "int8_onnx"}


def model_widths(table: LatencyTable, model: nn.Module, sample_shape: Sequence[int]) -> dict[str, int] | None:
    """Each of the table's groups' prunable channels in ``model`` (a thinned copy of the model the
    table was measured for: module names, hence group names, are kept); None when the model's
    groups are not the table's (another architecture)."""
    work = copy.deepcopy(model).cpu().eval()
    graph = build_dependency_graph(work, cost.example_input(work, tuple(sample_shape)), warn=False)
    named = named_groups(graph)
    if not set(table.groups) <= set(named):
        return None
    widths = {name: len(named[name].prunable) for name in table.groups}
    if any(width > table.groups[name].full for name, width in widths.items()):
        return None
    return widths


def measure_models_ms(
    models: Mapping[str, nn.Module], table: LatencyTable, warmup: int = 2, repeats: int = 10
) -> dict[str, float]:
    """Median milliseconds of each model as the table times a whole model: BatchNorm fused, in its
    runtime at its thread count and batch and on its clock, the models interleaved."""
    with cost.torch_threads(table.threads), tempfile.TemporaryDirectory(prefix="secateurs-check-") as scratch:
        runners = _table_runners(models, table, Path(scratch))
        with torch.no_grad():
            return time_runners(runners, warmup, repeats, table.machine.get("clock", "wall"))


def _table_runners(models: Mapping[str, nn.Module], table: LatencyTable, scratch: Path) -> dict:
    """Each model ready to be timed as the table times a whole model (BatchNorm fused, the table's
    runtime, threads and batch), its files under ``scratch``."""
    return {
        name: model_runner(
            fuse_batchnorm(copy.deepcopy(model).cpu().eval()),
            table.sample_shape,
            table.runtime,
            table.threads,
            table.batch,
            scratch / name,
        )
        for name, model in models.items()
    }


def width_measurer(
    table: LatencyTable, model: nn.Module, sample_shape: Sequence[int], repeats: int = 15
) -> Callable[[Mapping[str, int]], float]:
    """``measure(widths)``: ``model`` thinned to ``widths`` (the table's group names -> kept
    channels), timed whole as :func:`measure_models_ms` times it, interleaved with ``model`` at
    full width, in the table's milliseconds: the table's dense prediction times the median ratio
    thinned ÷ dense over the rounds (:func:`~.latency_measure.relative_times`), so a load that
    changed since the table was measured moves neither. ``model``'s architecture is copied now
    (its weights do not matter to a time), so later masks or training do not change it."""
    work = copy.deepcopy(model).cpu().eval()
    example = cost.example_input(work, tuple(sample_shape))
    graph = build_dependency_graph(work, example, warn=False)
    clock = table.machine.get("clock", "wall")

    def measure(widths: Mapping[str, int]) -> float:
        thinned = model_at_widths(work, widths, example, graph)
        with cost.torch_threads(table.threads), tempfile.TemporaryDirectory(prefix="secateurs-check-") as scratch:
            runners = _table_runners({"dense": work, "thinned": thinned}, table, Path(scratch))
            with torch.no_grad():
                ratios = relative_times(runners, "dense", 2, repeats, clock)
        return table.predict() * ratios["thinned"]

    return measure


def prediction_check(
    table: LatencyTable,
    dense: nn.Module,
    thinned: nn.Module,
    sample_shape: Sequence[int],
    repeats: int = 10,
    correction: float = 1.0,
) -> dict[str, float]:
    """``latency/predicted_ms/<model>`` and ``latency/measured_ms/<model>`` for the dense
    (masked) and the thinned model, and ``latency/error/thinned`` (measured over predicted,
    minus one); {} when the thinned model's groups are not the table's. ``correction``: the
    factor the pruner's measured allocation (:mod:`framework.pruning.budget.remeasure`) last
    applied to the table's prediction; the thinned model's prediction is the corrected one, and
    ``latency/table_ms/thinned`` the table's own (only when there is a correction)."""
    widths = model_widths(table, thinned, sample_shape)
    if widths is None:
        return {}
    measured = measure_models_ms({"dense": dense, "thinned": thinned}, table, repeats=repeats)
    predicted = {"dense": table.predict(), "thinned": correction * table.predict(widths)}
    metrics = {} if correction == 1.0 else {"latency/table_ms/thinned": table.predict(widths)}
    for name in ("dense", "thinned"):
        metrics[f"latency/predicted_ms/{name}"] = float(predicted[name])
        metrics[f"latency/measured_ms/{name}"] = float(measured[name])
    metrics["latency/error/thinned"] = measured["thinned"] / predicted["thinned"] - 1.0
    return metrics


def deploy_prediction(table: LatencyTable, predicted_ms: float, deploy_threads: int) -> dict[str, float]:
    """``deploy/predicted_ms_b1/<variant>``: the table's prediction beside the deploy step's
    measurement of the variant it describes, when the deploy step times that variant as the table
    was timed (batch 1, the same thread count); {} otherwise (a prediction for another thread
    count is not comparable)."""
    variant = DEPLOY_VARIANT.get(table.runtime)
    if variant is None or table.batch != 1 or table.threads != deploy_threads:
        return {}
    return {f"deploy/predicted_ms_b1/{variant}": float(predicted_ms)}
