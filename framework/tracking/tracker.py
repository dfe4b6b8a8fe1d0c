"""What a tracker is: the :class:`Tracker` protocol every task drives the same way.

A tracker records a run somewhere (MLflow, ``metrics.jsonl``, a CSV file of yours). It never
builds a model, never reads a trainer and knows no task: the runner tells it, in this order,

1. ``start(step)``: the run begins at ``step`` (0; a resumed training run: its first epoch);
2. ``log_metrics(metrics, step)``, once per step, ``step`` increasing. What a step is depends on
   the task: an epoch (``task=train``); the level's position in ``sensitivity.levels``, counted
   from 1, with 0 for the dense model (``task=sensitivity``, where ``sensitivity/level`` holds
   the level itself); 0, the one evaluation (``task=eval``);
3. ``log_files(files)``: the files the run made, as :class:`RunFile` (a path and the folder it
   belongs in), only those that exist;
4. ``log_model(model)``: a servable model the deploy step exported (:class:`ServableModel`), once
   per model; not called when the run exported none;
5. ``finish(status, error)``: ``FINISHED``, ``FAILED`` or ``KILLED`` (Ctrl-C, SIGTERM), with the
   error that stopped the run;

and at the very end ``where()``: the lines the end-of-run block prints for it (where its results
are; none is fine). A tracker that must find its record again when a run resumes (MLflow's run
id) also has ``name``, ``state_dict()`` and ``load_state_dict(state)`` (:class:`ResumableTracker`):
its state is kept in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
METHODS = ("start", "log_metrics", "log_files", "log_model", "finish", "where")


@dataclass(frozen=True)
class RunFile:
    """A file or folder of the run, and the folder it belongs in among the tracker's files
    (``""``: at the top)."""

    path: Path
    folder: str = ""


@dataclass(frozen=True)
class ServableModel:
    """A model exported for serving by the run's deploy step.

    ``name``: ``model`` (fp32, BatchNorm fused) or ``model_int8``; ``onnx``: its file;
    ``preprocessing``: how raw inputs become what it takes (a
    :class:`framework.data.preprocessing.Preprocessing`); ``input_example``: a few raw inputs
    (a float32 numpy array, as a user would send them)."""

    name: str
    onnx: Path
    preprocessing: Any
    input_example: Any


class Tracker(Protocol):
    """See the module's docstring for when each method is called."""

    def start(self, step: int) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_files(self, files: Sequence[RunFile]) -> None: ...

    def log_model(self, model: ServableModel) -> None: ...

    def finish(self, status: str, error: BaseException | None = None) -> None: ...

    def where(self) -> list[str]: ...


@runtime_checkable
class ResumableTracker(Protocol):
    """A tracker whose state a checkpoint keeps (under ``name``), to continue its record on resume."""

    name: str

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def missing_methods(candidate: object) -> list[str]:
    """The :class:`Tracker` methods ``candidate`` lacks (an empty list for a tracker)."""
    return [name for name in METHODS if not callable(getattr(candidate, name, None))]
