"""A latency table: what a model costs on one machine and runtime as a function of its widths.

Plain Python (no torch): the table is data measured elsewhere
(:func:`framework.deploy.latency_measure.build_latency_table`) and read here by the pruner's
allocation (:mod:`.allocation`), the sensitivity analysis and the reports.

What is in it
-------------
* ``groups``: every prunable dependency group (:mod:`.dependency`) by name, with its ``full``
  count of prunable channels and the ``widths`` at which it was measured (ascending, ending at
  ``full``).
* ``layers``: every Conv/Linear layer, timed *in isolation* (the layer alone on an input of the
  shape it sees in the model) along each of its two axes: ``in_curve`` is its time as its input
  group's width varies with the output at full width, ``out_curve`` the converse. An axis is
  ``fixed + per_channel · share · w`` channels wide at group width ``w`` (a Linear after a
  ``flatten`` reads ``H·W`` columns per channel; a producer of part of a concatenation holds a
  ``share`` of the group).
* ``model_ms``: the whole model measured at full width in the same runtime, and ``calibration``:
  it measured at a few uniform widths. What the layers timed alone do not account for
  (activations, residual adds, pooling, the runtime's cost per op) is the *rest*, fitted on those
  measurements as a fixed part plus a part proportional to the activation volume (the layers'
  output elements): ``rest = rest_fixed_ms + rest_volume_ms · volume / full volume``.

Prediction
----------
A layer between two groups shrinks along both axes; its time at input width ``a`` and output width
``b`` is taken as ``in_curve(a) · out_curve(b) / full``: exact for the compute-bound part (time
proportional to ``a · b``), and it keeps each axis's measured steps (a width the kernels dislike
costs on that axis whatever the other does). Between measured widths a curve is interpolated
linearly; the allocation only ever picks measured widths, so its predictions are lookups.
On a thinned model this is off by up to a quarter (the layers timed alone are not the model), most
on the widths an allocation picks; a run therefore measures the widths it picks before accepting
them (:mod:`.remeasure`).

Steps
-----
:meth:`LatencyTable.latency_steps` reads a group's curve (the model's predicted latency as that
group's width varies, the others at full width) and keeps the widths at which latency actually
drops: the widest width of every plateau. Removing channels down to a width inside a plateau
costs accuracy and buys no time, so those widths are never chosen: the measured, hardware-aware
form of ``round_to``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.pruning.spec import LATENCY_RUNTIMES

if TYPE_CHECKING:  # the table itself needs no torch
    from framework.pruning.graph.groups import DependencyGraph, DependencyGroup

TABLE_FORMAT = "secateurs.latency_table/1"
RUNTIMES = LATENCY_RUNTIMES
# A width is a latency step when it saves at least this share of the group's time at full width
# over the next wider step: below it, measured medians on a shared CPU are within noise.
STEP_TOLERANCE = 0.01


@dataclass(frozen=True)
class Axis:
    """One side (input or output channels) of a timed layer. ``group`` is None for a side that
    never changes (image planes, classes, channels no pruner can remove)."""

    full: int  # channels of this side at full width
    group: str | None = None
    per_channel: int = 1  # channels (columns) of this side per coupled channel of the group
    share: float = 1.0  # the share of the group's prunable channels that touch this side
    fixed: int = 0  # channels that stay whatever the group's width

    def width(self, group_width: int | None, group_full: int | None) -> int:
        """Channels of this side when its group keeps ``group_width`` of its ``group_full``."""
        if self.group is None or group_width is None or not group_full:
            return self.full
        kept = round(self.share * group_width)
        return max(1, self.fixed + self.per_channel * kept)


@dataclass
class TimedLayer:
    module: str
    in_axis: Axis
    out_axis: Axis
    full_ms: float
    in_curve: dict[int, float]  # input group width -> ms (output at full width)
    out_curve: dict[int, float]  # output group width -> ms (input at full width)
    outputs_per_channel: int = 1  # output elements per output channel (spatial positions, tokens)

    def ms(self, widths: Mapping[str, int], groups: Mapping[str, Group]) -> float:
        a = _group_width(self.in_axis, widths, groups)
        b = _group_width(self.out_axis, widths, groups)
        same_group = self.in_axis.group is not None and self.in_axis.group == self.out_axis.group
        if same_group:  # depthwise: one width moves both sides, measured together
            return _interpolate(self.in_curve, a) if a is not None else self.full_ms
        along_in = _interpolate(self.in_curve, a) if a is not None else self.full_ms
        along_out = _interpolate(self.out_curve, b) if b is not None else self.full_ms
        return along_in * along_out / self.full_ms if self.full_ms > 0 else 0.0

    def output_volume(self, widths: Mapping[str, int], groups: Mapping[str, Group]) -> int:
        axis = self.out_axis
        group = groups.get(axis.group) if axis.group else None
        width = axis.width(widths.get(axis.group) if axis.group else None, group.full if group else None)
        return width * self.outputs_per_channel


@dataclass
class Group:
    name: str
    full: int  # prunable channels
    widths: tuple[int, ...]  # measured widths, ascending, the last is ``full``


def _group_width(axis: Axis, widths: Mapping[str, int], groups: Mapping[str, Group]) -> int | None:
    if axis.group is None or axis.group not in groups:
        return None
    return widths.get(axis.group, groups[axis.group].full)


def _interpolate(curve: Mapping[int, float], width: int) -> float:
    if width in curve:
        return curve[width]
    points = sorted(curve.items())
    if width <= points[0][0]:
        return points[0][1]
    if width >= points[-1][0]:
        return points[-1][1]
    for (w0, t0), (w1, t1) in zip(points, points[1:]):
        if w0 <= width <= w1:
            return t0 + (t1 - t0) * (width - w0) / (w1 - w0)
    return points[-1][1]  # unreachable: the loop covers [first, last]


@dataclass
class LatencyTable:
    """See the module docstring. Times are milliseconds per forward pass at batch ``batch``
    (``unit="ms"``); a MAC table (:func:`framework.deploy.mac_table.mac_table`) holds
    millions of multiply-accumulates per sample in the same form (``unit="MMAC"``, no rest)."""

    runtime: str
    threads: int
    batch: int
    sample_shape: tuple[int, ...]
    groups: dict[str, Group]
    layers: list[TimedLayer]
    model_ms: float
    rest_fixed_ms: float = 0.0
    rest_volume_ms: float = 0.0
    # (uniform width fraction, measured ms) of the whole model: what the rest was fitted on
    calibration: list[tuple[float, float]] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)  # where it was measured
    model_key: str = ""  # the architecture it was measured for (layers, widths, input shape)
    build_seconds: float = 0.0
    unit: str = "ms"

    # ----------------------------------------------------------------------------- prediction
    @property
    def layers_ms(self) -> float:
        return sum(layer.full_ms for layer in self.layers)

    def layers_at(self, widths: Mapping[str, int]) -> float:
        """The layers' summed time alone at ``widths``."""
        return sum(layer.ms(widths, self.groups) for layer in self.layers)

    def volume_share(self, widths: Mapping[str, int]) -> float:
        """Activation volume at ``widths`` over the volume at full width."""
        full = sum(layer.output_volume({}, self.groups) for layer in self.layers)
        return sum(layer.output_volume(widths, self.groups) for layer in self.layers) / full if full else 1.0

    def predict(self, widths: Mapping[str, int] | None = None) -> float:
        """The model's latency (in :attr:`unit`) with ``widths`` (group name -> kept prunable
        channels; groups left out stay at full width)."""
        widths = widths or {}
        unknown = sorted(set(widths) - set(self.groups))
        if unknown:
            raise KeyError(f"the latency table has no group {unknown[0]!r}; groups: {', '.join(self.groups)}")
        rest = self.rest_fixed_ms + self.rest_volume_ms * self.volume_share(widths)
        return self.layers_at(widths) + rest

    def change(self, widths: Mapping[str, int], name: str, to: int) -> float:
        """``predict({**widths, name: to}) - predict(widths)``, from the layers group ``name``
        touches only (the rest's volume part is a sum over layers too)."""
        moved = {**widths, name: to}
        full_volume = self._full_volume()
        delta = 0.0
        for layer in self._touching(name):
            delta += layer.ms(moved, self.groups) - layer.ms(widths, self.groups)
            volume = layer.output_volume(moved, self.groups) - layer.output_volume(widths, self.groups)
            delta += self.rest_volume_ms * volume / full_volume if full_volume else 0.0
        return delta

    def neighbours(self, name: str) -> set[str]:
        """The groups that share a layer with group ``name`` (its own name included): the ones
        whose steps cost differently once ``name`` changes width."""
        return {axis.group for layer in self._touching(name) for axis in (layer.in_axis, layer.out_axis) if axis.group}

    def _touching(self, name: str) -> list[TimedLayer]:
        cache = self.__dict__.setdefault("_touching_cache", {})
        if name not in cache:
            cache[name] = [layer for layer in self.layers if name in (layer.in_axis.group, layer.out_axis.group)]
        return cache[name]

    def _full_volume(self) -> int:
        if "_full_volume_cache" not in self.__dict__:
            self.__dict__["_full_volume_cache"] = sum(layer.output_volume({}, self.groups) for layer in self.layers)
        return self.__dict__["_full_volume_cache"]

    def group_curve(self, name: str) -> dict[int, float]:
        """The model's predicted latency at each measured width of group ``name``, the others at
        full width: the group's latency as a function of its width."""
        group = self.groups[name]
        return {width: self.predict({name: width}) for width in group.widths}

    def latency_steps(self, name: str, tolerance: float = STEP_TOLERANCE) -> list[int]:
        """The widths of group ``name`` worth pruning to, ascending: walking down from full
        width, a width is kept when it is faster than the last kept one by ``tolerance`` of the
        group's own time (the first width of each lower plateau)."""
        curve = self.group_curve(name)
        ordered = sorted(curve, reverse=True)
        margin = tolerance * self.group_ms(name)
        steps = [ordered[0]]
        level = curve[ordered[0]]
        for width in ordered[1:]:
            if curve[width] < level - margin:
                steps.append(width)
                level = curve[width]
        return sorted(steps)

    def group_ms(self, name: str) -> float:
        """Time of the layers that group ``name`` touches, at full width."""
        return sum(layer.full_ms for layer in self.layers if name in (layer.in_axis.group, layer.out_axis.group))

    def smallest_ms(self, floors: Mapping[str, int] | None = None) -> float:
        """Predicted latency with every group at its narrowest measured width (or ``floors``)."""
        floors = floors or {}
        return self.predict({name: floors.get(name, group.widths[0]) for name, group in self.groups.items()})

    # ----------------------------------------------------------------------------- files
    def to_json(self) -> dict:
        return {
            "format": TABLE_FORMAT,
            "runtime": self.runtime,
            "threads": self.threads,
            "batch": self.batch,
            "sample_shape": list(self.sample_shape),
            "model_ms": self.model_ms,
            "rest_fixed_ms": self.rest_fixed_ms,
            "rest_volume_ms": self.rest_volume_ms,
            "calibration": [list(point) for point in self.calibration],
            "machine": self.machine,
            "model_key": self.model_key,
            "build_seconds": self.build_seconds,
            "unit": self.unit,
            "groups": [asdict(g) for g in self.groups.values()],
            "layers": [_layer_json(layer) for layer in self.layers],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyTable:
        if data.get("format") != TABLE_FORMAT:
            raise ValueError(f"not a latency table of format {TABLE_FORMAT}: {data.get('format')!r}")
        groups = {
            g["name"]: Group(g["name"], int(g["full"]), tuple(int(w) for w in g["widths"])) for g in data["groups"]
        }
        layers = [
            TimedLayer(
                module=entry["module"],
                in_axis=Axis(**entry["in_axis"]),
                out_axis=Axis(**entry["out_axis"]),
                full_ms=float(entry["full_ms"]),
                in_curve={int(w): float(t) for w, t in entry["in_curve"]},
                out_curve={int(w): float(t) for w, t in entry["out_curve"]},
                outputs_per_channel=int(entry["outputs_per_channel"]),
            )
            for entry in data["layers"]
        ]
        return cls(
            runtime=data["runtime"],
            threads=int(data["threads"]),
            batch=int(data["batch"]),
            sample_shape=tuple(int(d) for d in data["sample_shape"]),
            groups=groups,
            layers=layers,
            model_ms=float(data["model_ms"]),
            rest_fixed_ms=float(data.get("rest_fixed_ms", 0.0)),
            rest_volume_ms=float(data.get("rest_volume_ms", 0.0)),
            calibration=[(float(f), float(t)) for f, t in data.get("calibration", [])],
            machine=dict(data.get("machine", {})),
            model_key=str(data.get("model_key", "")),
            build_seconds=float(data.get("build_seconds", 0.0)),
            unit=str(data.get("unit", "ms")),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.to_json(), indent=1))
        temporary.replace(path)  # atomic: a reader never sees half a table
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        return cls.from_json(json.loads(Path(path).read_text()))


def _layer_json(layer: TimedLayer) -> dict:
    return {
        "module": layer.module,
        "in_axis": asdict(layer.in_axis),
        "out_axis": asdict(layer.out_axis),
        "full_ms": layer.full_ms,
        # JSON keys are strings: curves are stored as [width, ms] pairs
        "in_curve": sorted(layer.in_curve.items()),
        "out_curve": sorted(layer.out_curve.items()),
        "outputs_per_channel": layer.outputs_per_channel,
    }


def named_groups(graph: DependencyGraph) -> dict[str, DependencyGroup]:
    """The dependency groups whose channels a width budget can remove, by unique name (the
    group's first producer; ``#2``... where two share one), in the graph's order. Attention heads
    are not widths."""
    named: dict[str, DependencyGroup] = {}
    for group in graph.groups:
        if group.kind != "channel" or not group.prunable:
            continue
        name, suffix = group.name, 2
        while name in named:
            name, suffix = f"{group.name}#{suffix}", suffix + 1
        named[name] = group
    return named


def measured_widths(full: int, max_points: int) -> tuple[int, ...]:
    """The widths at which a group of ``full`` prunable channels is measured: every multiple of
    the smallest power of two that leaves at most ``max_points`` of them, and ``full``."""
    step = 1
    while full / step > max_points:
        step *= 2
    return tuple(sorted({*range(step, full + 1, step), full}))


def widths_between(widths: Sequence[int], low: int, high: int) -> list[int]:
    return [w for w in widths if low <= w <= high]


def fit_rest(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``(fixed, per full volume)`` of the least-squares line through ``(volume share, residual
    ms)`` points; a negative slope (noise) falls back to a constant."""
    if not points:
        return 0.0, 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread > 0 else 0.0
    if slope < 0:
        return mean_y, 0.0
    return mean_y - slope * mean_x, slope
