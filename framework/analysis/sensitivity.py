"""Sensitivity analysis: prune one unit at a time to several levels, evaluate, restore.

A *unit* is what gets one target: a selected weight for fine-grained (or ``coupling=layer``)
pruning, a dependency group of coupled channels for coupled filter/channel pruning (named by its
first producer layer). For every unit and level the configured pruner (criterion, ranking view,
``fold_batchnorm``) prunes that unit alone, one-shot, on the dense weights; the model is evaluated
without training (top-1, top-5, loss) and restored exactly. Each row also records what the
masks removed: weights of the pruned set, parameters of the whole model (biases and BatchNorm
entries of coupled channels included), and MACs (each Conv/Linear's MACs times the share of its
weight that is zero: exact for removed filters/channels of ungrouped layers, the zero-skipping
figure for fine-grained masks).

:func:`derive_levels` turns the curves into per-unit levels for a budget (see its docstring).
Plain torch (and matplotlib for the plot); no Hydra, no MLflow.
"""

from __future__ import annotations

import csv
import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from framework.errors import SecateursError
from framework.pruning.spec import AGP
from framework.training.metrics import EpochAverages

if TYPE_CHECKING:
    from framework.pruning.engine import PruningEngine

DENSE = "(dense)"
COLUMNS = ("unit", "level", "top1", "top5", "loss", "pruned_weights", "pruned_params", "pruned_macs")


class SensitivityError(SecateursError):
    """An analysis that cannot go on (an earlier one in the same folder with other settings...)."""


@dataclass(frozen=True)
class Unit:
    """What one level applies to: ``name`` for tables, ``weights`` for a derived ``levels`` config."""

    name: str
    weights: tuple[str, ...]


@dataclass
class Row:
    unit: str
    level: float
    top1: float
    top5: float
    loss: float
    pruned_weights: int = 0
    pruned_params: int = 0
    pruned_macs: int = 0


@dataclass
class Totals:
    """Denominators of the budgets: weights of the pruned set, all parameters, all MACs."""

    weights: int
    params: int
    macs: int
    layer_macs: dict = field(default_factory=dict)  # module name -> MACs of one sample


def units_of(engine: PruningEngine) -> list[Unit]:
    """The units of a pruning engine: its coupled groups, or its selected weights."""
    return [Unit(name, weights) for name, weights in engine.units().items()]


@contextmanager
def pruning_only(engine: PruningEngine, unit: Unit | None, levels: Mapping[str, float]) -> Iterator[None]:
    """Let ``engine.update_masks`` prune only ``unit`` (None: every unit) to ``levels``
    (weight name -> target), on a fresh mask store; the engine is as before afterwards."""
    from framework.pruning.coupled import CoupledPruningEngine
    from framework.pruning.masks import MaskStore

    saved = engine.__dict__.copy()
    try:
        engine.store = MaskStore(dict(engine.store.params))
        # the analysis pins each layer's target for one measurement; restored from `saved` below
        engine.layer_targets = lambda epoch, fractional=None: {  # type: ignore[method-assign]
            name: levels.get(name, 0.0) for name in saved["finals"]
        }
        if unit is not None:
            if isinstance(engine, CoupledPruningEngine):
                engine.plans = [plan for plan in saved["plans"] if plan.name == unit.name]
            else:
                engine.selected = [p for p in saved["selected"] if p.name == unit.name]
        yield
    finally:
        engine.__dict__.clear()
        engine.__dict__.update(saved)


def evaluate(model: nn.Module, batches: Iterable, device: torch.device | str = "cpu") -> dict[str, float]:
    """Top-1, top-5 and mean cross-entropy of ``model`` (eval mode) over ``batches``."""
    model.eval()
    averages = EpochAverages()
    with torch.no_grad():
        for inputs, targets in batches:
            inputs, targets = inputs.to(device), targets.to(device)
            logits = model(inputs)
            averages.update(nn.functional.cross_entropy(logits, targets), logits, targets)
    return averages.result()


def _zeros(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() - int(torch.count_nonzero(t)) for t in tensors)


class Analysis:
    """Holds the model, the engine and the evaluation; computes rows (see the module docstring)."""

    def __init__(
        self, model: nn.Module, engine, batches: Iterable, device="cpu", input_shape: Sequence[int] | None = None
    ):
        from framework.analysis.cost import macs_by_module

        self.model, self.engine, self.batches, self.device = model, engine, batches, device
        self.units = units_of(engine)
        self.dense_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.weight_names = [p.name for p in engine.selected]
        self.layer_macs, all_macs = {}, 0
        if input_shape is not None:
            was_training = model.training
            own = macs_by_module(model, tuple(input_shape), batch_size=1)
            model.train(was_training)
            all_macs = sum(own.values())
            modules = dict(model.named_modules())
            self.layer_macs = {
                name: macs
                for name, macs in own.items()
                if isinstance(modules.get(name), (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
            }
        params = dict(model.named_parameters())
        self.totals = Totals(
            weights=sum(params[n].numel() for n in self.weight_names),
            params=sum(p.numel() for p in params.values()),
            macs=all_macs,
            layer_macs=self.layer_macs,
        )
        self._dense_zeros = self._zero_counts()

    def _zero_counts(self) -> tuple[int, int, dict]:
        params = dict(self.model.named_parameters())
        per_layer = {
            name: _zeros([params[f"{name}.weight"]]) / params[f"{name}.weight"].numel()
            for name in self.layer_macs
            if f"{name}.weight" in params
        }
        return (_zeros(params[n] for n in self.weight_names), _zeros(params.values()), per_layer)

    def removed(self) -> tuple[int, int, int]:
        """(weights, params, MACs) the current masks removed, compared with the dense model."""
        weights, params, per_layer = self._zero_counts()
        dense_weights, dense_params, dense_layer = self._dense_zeros
        macs = sum(self.layer_macs[name] * (share - dense_layer[name]) for name, share in per_layer.items())
        return weights - dense_weights, params - dense_params, int(round(macs))

    def restore(self) -> None:
        self.model.load_state_dict(self.dense_state)

    def prune(self, unit: Unit | None, levels: Mapping[str, float]) -> None:
        """Prune ``unit`` (None: all units) to ``levels`` (weight name -> target) on the dense weights."""
        self.restore()
        with pruning_only(self.engine, unit, levels):
            self.engine.update_masks(self.engine.schedule.starting_epoch)

    def dense_row(self) -> Row:
        self.restore()
        result = evaluate(self.model, self.batches, self.device)
        return Row(DENSE, 0.0, result["top1"], result["top5"], result["loss"])

    def row(self, unit: Unit, level: float) -> Row:
        """The model with only ``unit`` pruned to ``level``, evaluated; the model is restored after."""
        try:
            self.prune(unit, {name: level for name in unit.weights})
            result = evaluate(self.model, self.batches, self.device)
            weights, params, macs = self.removed()
        finally:
            self.restore()
        return Row(unit.name, float(level), result["top1"], result["top5"], result["loss"], weights, params, macs)

    def cost_of(self, levels: Mapping[str, float]) -> tuple[int, int, int]:
        """What pruning every unit at once to ``levels`` removes (the model is restored after)."""
        try:
            self.prune(None, levels)
            return self.removed()
        finally:
            self.restore()


# -- running over units x levels, in this process or in forked workers ------------------------------

_WORKER_ANALYSIS: Analysis | None = None  # set in the parent before forking; inherited by workers


def _worker_row(unit_index: int, level: float) -> Row:
    torch.set_num_threads(1)  # workers share the cores
    analysis = _WORKER_ANALYSIS
    assert analysis is not None, "run_rows sets the analysis before it forks the workers"
    return analysis.row(analysis.units[unit_index], level)


def run_rows(
    analysis: Analysis,
    levels: Sequence[float],
    done: set[tuple[str, float]],
    on_row: Callable[[Row], None],
    workers: int = 1,
    progress: bool = False,
) -> None:
    """Compute every (unit, level) row not in ``done`` and hand each to ``on_row`` as it is ready
    (so an interrupted analysis keeps what it finished). ``workers > 1`` forks that many processes."""
    todo = [
        (i, float(level))
        for i, unit in enumerate(analysis.units)
        for level in levels
        if (unit.name, round(float(level), 6)) not in done
    ]
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="sensitivity (layers x levels)", disable=not (progress and sys.stdout.isatty()))
    try:
        if workers <= 1 or len(todo) <= 1:
            for index, level in todo:
                on_row(analysis.row(analysis.units[index], level))
                bar.update()
            return
        global _WORKER_ANALYSIS
        _WORKER_ANALYSIS = analysis
        try:
            context = multiprocessing.get_context("fork")  # workers inherit the model and data
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_worker_row, index, level) for index, level in todo]
                for future in as_completed(futures):
                    on_row(future.result())
                    bar.update()
        finally:
            _WORKER_ANALYSIS = None
    finally:
        bar.close()


# -- files: rows CSV (appended as rows come), table, plot ------------------------------------------


def read_rows(path: Path) -> list[Row]:
    """Rows of an earlier (maybe interrupted) analysis; an unfinished last line is ignored."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            try:
                rows.append(
                    Row(
                        record["unit"],
                        float(record["level"]),
                        float(record["top1"]),
                        float(record["top5"]),
                        float(record["loss"]),
                        int(record["pruned_weights"]),
                        int(record["pruned_params"]),
                        int(record["pruned_macs"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue  # a line torn by a kill
    return rows


class RowWriter:
    """Appends rows to a CSV, flushed after each, so a kill loses at most the row in progress."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.is_file() or path.stat().st_size == 0
        if not fresh and not path.read_bytes().endswith(b"\n"):
            with path.open("a") as handle:  # end a torn line so the next row starts clean
                handle.write("\n")
        self.handle = path.open("a", newline="")
        self.writer = csv.writer(self.handle)
        if fresh:
            self.writer.writerow(COLUMNS)
            self.handle.flush()

    def __call__(self, row: Row) -> None:
        self.writer.writerow([getattr(row, c) for c in COLUMNS])
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def ordered(rows: Sequence[Row], units: Sequence[Unit]) -> list[Row]:
    """The dense row, then each unit's rows by level (units in model order)."""
    order = {DENSE: -1, **{u.name: i for i, u in enumerate(units)}}
    return sorted(rows, key=lambda r: (order.get(r.unit, len(order)), r.level))


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([getattr(row, c) for c in COLUMNS])
    return path


def markdown(rows: Sequence[Row], units: Sequence[Unit], levels: Sequence[float]) -> str:
    """Top-1 per unit (rows) and level (columns); the dense top-1 in the caption line."""
    dense = next((r for r in rows if r.unit == DENSE), None)
    by_key = {(r.unit, round(r.level, 6)): r for r in rows}
    header = "| unit | " + " | ".join(f"{level:g}" for level in levels) + " |"
    lines = [
        f"Top-1 with only that unit pruned (dense: {dense.top1:.4f})" if dense else "Top-1",
        "",
        header,
        "|---|" + "---:|" * len(levels),
    ]
    for unit in units:
        cells = [by_key.get((unit.name, round(float(level), 6))) for level in levels]
        lines.append(f"| {unit.name} | " + " | ".join(f"{c.top1:.4f}" if c else "" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], units: Sequence[Unit], path: Path, title: str = "") -> Path:
    """One curve per unit: top-1 against the unit's sparsity level; the dense top-1 dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    dense = next((r for r in rows if r.unit == DENSE), None)
    for unit in units:
        points = sorted((r.level, r.top1) for r in rows if r.unit == unit.name)
        if dense is not None:
            points = [(0.0, dense.top1)] + points
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=unit.name)
    if dense is not None:
        axes.axhline(dense.top1, color="grey", linestyle="--", linewidth=0.8)
    axes.set_xlabel("sparsity level of the unit (one-shot, no fine-tuning)")
    axes.set_ylabel("val top-1")
    axes.set_title(title or "sensitivity")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# -- from curves to levels -----------------------------------------------------------------------------


@dataclass
class Derived:
    """The levels chosen for a budget, what they are estimated and measured to cost."""

    unit_levels: dict[str, float]
    weight_levels: dict[str, float]
    method: str
    budget_kind: str
    budget: float
    measured: dict[str, float]  # share removed of weights / params / macs when all are pruned at once
    predicted_top1_drop: float  # sum of the units' one-at-a-time drops (an estimate, drops compound)
    predicted_ms: float | None = None  # budget_kind=latency_ms: the latency table's prediction, all pruned
    dense_ms: float | None = None  # and the table's dense model


def drop_curves(rows: Sequence[Row], units: Sequence[Unit]):
    """The dense row, and per unit its ``(level, top-1 drop, row)`` points, the drop made
    non-decreasing over levels."""
    dense = next(r for r in rows if r.unit == DENSE)
    curves = {}
    for unit in units:
        points = sorted((r for r in rows if r.unit == unit.name), key=lambda r: r.level)
        drop, monotone = 0.0, []
        for r in points:  # a drop never shrinks with more pruning (noise would say otherwise)
            drop = max(drop, dense.top1 - r.top1, 0.0)
            monotone.append((r.level, drop, r))
        curves[unit.name] = monotone
    return dense, curves


_COST_FIELD = {"sparsity": "pruned_weights", "params": "pruned_params", "macs": "pruned_macs"}


def derive_levels(
    rows: Sequence[Row],
    units: Sequence[Unit],
    budget_kind: str,
    budget: float,
    measure: Callable[[Mapping[str, float]], tuple[int, int, int]],
    totals: Totals,
) -> Derived:
    """Per-unit levels for a budget, from the one-unit-at-a-time curves.

    ``top1_drop``: *equal-drop threshold* (as Distiller's users read their plots): every unit gets
    the highest level whose own top-1 drop is at most ``budget``. Drops of different units add up
    when they are pruned together, so the trained result can lose more; the curves cannot say.

    ``sparsity`` / ``params`` / ``macs``: *greedy on the curves*: starting from nothing pruned,
    repeatedly raise the one unit whose next step (to its next level) costs the least top-1 per
    unit of the budget's resource removed (the one-shot drop, made non-decreasing over levels),
    until the resource removed reaches ``budget`` of its total. The removal is measured on the
    masks of all chosen levels applied at once (``measure``), so coupled channels that share a
    layer are not counted twice; the greedy goes on until the measurement meets the budget.
    """
    dense, curves = drop_curves(rows, units)
    current = {u.name: (0.0, 0.0, 0) for u in units}  # level, drop, cost

    def as_weights(unit_levels):
        return {w: unit_levels[u.name] for u in units for w in u.weights}

    def shares(levels):
        weights, params, macs = measure(as_weights(levels))
        return {
            "sparsity": weights / max(totals.weights, 1),
            "params": params / max(totals.params, 1),
            "macs": macs / max(totals.macs, 1),
        }

    if budget_kind == "top1_drop":
        chosen = {}
        for unit in units:
            allowed = [level for level, drop, _ in curves[unit.name] if drop <= budget]
            chosen[unit.name] = max(allowed, default=0.0)
        method = "equal-drop threshold"
    else:
        field_name = _COST_FIELD[budget_kind]
        total = {"sparsity": totals.weights, "params": totals.params, "macs": totals.macs}[budget_kind]
        needed = budget * total
        while True:
            estimate = sum(cost for _, _, cost in current.values())
            if estimate >= needed and shares({u: lv for u, (lv, _, _) in current.items()})[budget_kind] >= budget:
                break
            best = None
            for unit in units:
                level, drop, cost = current[unit.name]
                # the unit's next level only: small steps keep the overshoot of the budget small
                following = [point for point in curves[unit.name] if point[0] > level][:1]
                for candidate, candidate_drop, row in following:
                    gained = getattr(row, field_name) - cost
                    if gained <= 0:
                        continue
                    ratio = (candidate_drop - drop) / gained
                    key = (ratio, -gained)
                    if best is None or key < best[0]:
                        best = (key, unit.name, (candidate, candidate_drop, getattr(row, field_name)))
            if best is None:
                raise SensitivityError(
                    f"sensitivity.budget={budget} ({budget_kind}) cannot be met with sensitivity.levels up to "
                    f"{max(level for c in curves.values() for level, _, _ in c)}; allowed: a smaller budget or higher levels"
                )
            current[best[1]] = best[2]
        chosen = {u: lv for u, (lv, _, _) in current.items()}
        method = "greedy on the curves"
    drop_sum = sum(next((d for lv, d, _ in curves[u] if lv == level), 0.0) for u, level in chosen.items())
    return Derived(chosen, as_weights(chosen), method, budget_kind, budget, shares(chosen), drop_sum)


def derived_config(pruner_node: Mapping, derived: Derived) -> dict:
    """The pruner node that trains to the derived levels (AGP, every other key as analysed)."""
    node = dict(pruner_node)
    node["method"] = AGP
    node["initial_sparsity"] = 0.0
    node["final_sparsity"] = 0.0  # a layer without a level is not pruned
    node["levels"] = {name: float(level) for name, level in derived.weight_levels.items()}
    return node
