"""What the runner tells a tracker about a run: a neutral description, no tracker's vocabulary.

A tracker (a ``tracking`` component, see :mod:`framework.tracking.trackers`) decides from it
what to record: MLflow turns it into params, tags and a run name; a CSV tracker of yours may read
only ``run.context.run_dir``. It is complete when the tracker is built (before any data is read).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from framework.run_context import RunContext


class RunDescription:
    """A plain object, not a dataclass: ``hydra.utils.instantiate`` passes it to a tracker's
    ``run`` argument as it is (a dataclass would become a config node)."""

    def __init__(
        self,
        context: RunContext,  # where the run writes (its folders) and how it was asked for
        task: str = "train",  # train | sensitivity | eval | oneshot
        changes: Sequence[str] = (),  # "epochs: 3 -> 6" after resume_changed=allow
        fold_pairs: list[dict[str, Any]] | None = None,  # fold_batchnorm: the layers folded
        input_shape: Sequence[int] = (),  # one model input, (C, H, W)
        params: dict[str, Any] | None = None,  # the resolved config this run uses
        world_size: int = 1,  # processes of the run (torchrun)
        tags: Sequence[str] = (),  # the user's labels (config `tags`): "word" or "key:value"
    ):
        self.context = context
        self.task = task
        self.changes: list[str] = list(changes)
        self.fold_pairs = fold_pairs
        self.input_shape: tuple[int, ...] = tuple(input_shape)
        self.params: dict[str, Any] = dict(params or {})
        self.world_size = world_size
        self.tags: list[str] = list(tags)

    def __repr__(self) -> str:
        return f"RunDescription(run_dir={str(self.context.run_dir)!r}, task={self.task!r})"
