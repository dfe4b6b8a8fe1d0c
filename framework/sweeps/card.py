"""The report card's figures (Blalock et al. 2020, "What is the State of Neural Network Pruning?"):
from the child runs of a card sweep to one row per (method, compression ratio), mean ± std over
seeds. Pure functions of plain data; the files are written by :mod:`.card_files`, the runs are
read by :mod:`.card_runs`.

What a run contributes (its final metrics):

* ``card/top1_last``: top-1 on the test split at the last epoch;
* ``card/top1_selected``: top-1 on the test split at the epoch with the best *validation* top-1
  (validation carved from the training data), among the epochs at the run's final sparsity
  (:func:`selected_accuracy`, computed by the run itself from its epochs). Never the test set's
  best epoch;
* compression ratio: dense parameters ÷ remaining parameters (``thin/params/*``), theoretical
  speed-up: dense MACs ÷ remaining MACs (``thin/macs/*``); 1 for the dense model;
* latency at batch 1: the thinned model in eager PyTorch, and the deployed model (int8 ONNX when
  the run quantized, BatchNorm-fused fp32 ONNX otherwise); with ``deploy.enabled=false`` the
  thinning step's own eager and ONNX timings of the thinned model.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DENSE = "dense"
TOP1_LAST, TOP1_SELECTED, SELECTED_EPOCH = "card/top1_last", "card/top1_selected", "card/selected_epoch"
PARAMS, MACS = ("thin/params/dense", "thin/params/thinned"), ("thin/macs/dense", "thin/macs/thinned")
# the first of these a run logged: the deploy step's measurements, else the thinning step's own
LATENCY_THINNED = ("deploy/latency_ms_b1/thinned_fp32", "thin/eager_ms_b1/thinned", "deploy/latency_ms_b1/fused_fp32")
LATENCY_DEPLOYED = ("deploy/latency_ms_b1/int8_onnx", "deploy/latency_ms_b1/fused_onnx_fp32", "thin/onnx_ms_b1/thinned")
# Blalock et al. call MNIST-class dataset/model pairs toys: results there may not carry over.
TOY_DATASETS = {
    "digits": "8x8 digits, MNIST-class",
    "mnist": "MNIST",
    "mnist1d": "MNIST-1D, MNIST-class (though, unlike MNIST, methods do differ on it)",
    "synthetic": "random tensors",
}
SMALL_DATASETS = {"cifar10": "CIFAR-10: the most common pair in the literature, but small images; confirm on ImageNet"}


def selected_accuracy(epochs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """``card/top1_last``, ``card/top1_selected`` and ``card/selected_epoch`` from a run's epochs
    (each a mapping with ``val/top1``, ``test/top1`` when the data has a test split, and
    ``sparsity/total`` when it pruned; ``epoch`` optional, the position otherwise).

    The selected epoch is the first with the highest validation top-1 among those at the final
    sparsity (a pruned model is only finished once it is at its target). Without a test split,
    the reported accuracy is the validation split's own: then selection and report share data.
    """
    rows = [row for row in epochs if "val/top1" in row]
    if not rows:
        return {}
    reported = "test/top1" if all("test/top1" in row for row in rows) else "val/top1"
    final_sparsity = max((row.get("sparsity/total", 0.0) for row in rows), default=0.0)
    eligible = [i for i, row in enumerate(rows) if row.get("sparsity/total", 0.0) >= final_sparsity - 1e-9]
    best = max(eligible, key=lambda i: (rows[i]["val/top1"], -i))
    return {
        TOP1_LAST: float(rows[-1][reported]),
        TOP1_SELECTED: float(rows[best][reported]),
        SELECTED_EPOCH: float(rows[best].get("epoch", best)),
    }


@dataclass(frozen=True)
class CardRun:
    """One child run as the card reads it."""

    run_id: str
    method: str  # the compared method ("l1", "l1 global", "random", ...); DENSE for the dense model
    ratio: float  # the compression ratio asked for (1 for the dense model)
    seed: int
    finished: bool
    metrics: Mapping[str, float] = field(default_factory=dict)  # final values


@dataclass(frozen=True)
class RunFigures:
    top1_last: float | None
    top1_selected: float | None
    compression: float | None  # dense parameters ÷ remaining parameters
    speedup: float | None  # dense MACs ÷ remaining MACs (theoretical)
    latency_thinned_ms: float | None
    latency_deployed_ms: float | None


def _ratio(metrics: Mapping[str, float], names: tuple[str, str]) -> float | None:
    dense, remaining = (metrics.get(name) for name in names)
    return dense / remaining if dense and remaining else None


def _first(metrics: Mapping[str, float], names: Sequence[str]) -> float | None:
    return next((float(metrics[name]) for name in names if name in metrics), None)


def run_figures(run: CardRun) -> RunFigures:
    dense = run.method == DENSE
    return RunFigures(
        top1_last=run.metrics.get(TOP1_LAST),
        top1_selected=run.metrics.get(TOP1_SELECTED),
        compression=1.0 if dense else _ratio(run.metrics, PARAMS),
        speedup=1.0 if dense else _ratio(run.metrics, MACS),
        latency_thinned_ms=_first(run.metrics, LATENCY_THINNED),
        latency_deployed_ms=_first(run.metrics, LATENCY_DEPLOYED),
    )


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation over seeds (std None with one value, mean None with none)."""

    mean: float | None
    std: float | None
    count: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread:
        present = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not present:
            return cls(None, None, 0)
        std = statistics.stdev(present) if len(present) > 1 else None
        return cls(statistics.fmean(present), std, len(present))


FIGURES = ("top1_last", "top1_selected", "compression", "speedup", "latency_thinned_ms", "latency_deployed_ms")


@dataclass(frozen=True)
class CardRow:
    method: str
    ratio: float
    runs: int  # finished runs (seeds) behind the figures
    failed: int
    figures: Mapping[str, Spread]


def _method_order(method: str) -> tuple[int, str]:
    """The dense model first, the random-ranking controls last, the methods by name between."""
    return (0 if method == DENSE else 2 if method.startswith("random") else 1, method)


def card_rows(runs: Sequence[CardRun]) -> list[CardRow]:
    """One row per (method, ratio): the dense model first, the random controls last, ratios ascending."""
    groups: dict[tuple[str, float], list[CardRun]] = {}
    for run in runs:
        groups.setdefault((run.method, float(run.ratio)), []).append(run)
    rows = []
    for (method, ratio), members in sorted(groups.items(), key=lambda item: (_method_order(item[0][0]), item[0][1])):
        done = [run_figures(r) for r in members if r.finished]
        rows.append(
            CardRow(
                method=method,
                ratio=ratio,
                runs=len(done),
                failed=len(members) - len(done),
                figures={name: Spread.of([getattr(f, name) for f in done]) for name in FIGURES},
            )
        )
    return rows


@dataclass(frozen=True)
class Band:
    """One method's curve: x (mean compression or speed-up) against mean ± std top-1."""

    method: str
    x: list[float]
    mean: list[float]
    std: list[float]  # 0 where a point has a single run


def bands(rows: Sequence[CardRow], x_figure: str, y_figure: str = "top1_selected") -> list[Band]:
    """The curves of a plot: one per method (the dense model is one point at x = 1, drawn as a
    reference line by the plots)."""
    by_method: dict[str, Band] = {}
    for row in rows:
        x, y = row.figures[x_figure], row.figures[y_figure]
        if x.mean is None or y.mean is None:
            continue
        band = by_method.setdefault(row.method, Band(row.method, [], [], []))
        band.x.append(x.mean)
        band.mean.append(y.mean)
        band.std.append(y.std or 0.0)
    for band in by_method.values():
        order = sorted(range(len(band.x)), key=band.x.__getitem__)
        band.x[:], band.mean[:], band.std[:] = ([values[i] for i in order] for values in (band.x, band.mean, band.std))
    return list(by_method.values())


def toy_line(dataset: str) -> str:
    """Whether the dataset makes a toy pair, in one line."""
    if dataset in TOY_DATASETS:
        return f"Toy pair: yes ({TOY_DATASETS[dataset]}; Blalock et al. 2020 call such pairs toys: confirm on a larger dataset)."
    if dataset in SMALL_DATASETS:
        return f"Toy pair: no ({SMALL_DATASETS[dataset]})."
    return f"Toy pair: no ({dataset})."


@dataclass(frozen=True)
class Published:
    """A published result the card puts beside ours (a reproduction preset states it)."""

    label: str
    source: str
    top1_dense: float | None = None
    top1_pruned: float | None = None
    compression: float | None = None
    speedup: float | None = None
    note: str = ""
