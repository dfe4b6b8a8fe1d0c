"""What the runner tells a tracker about a run: a neutral description, no tracker's vocabulary.

A tracker (a ``tracking`` component, see :mod:`framework.tracking.trackers`) decides from it
what to log: MLflow turns it into params, tags, a run name and artifacts; a CSV logger of yours
may read only ``run_dir``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class RunDescription:
    """A plain object, not a dataclass: ``hydra.utils.instantiate`` passes it to a tracker's
    ``run`` argument as it is (a dataclass would become a config node)."""

    def __init__(
        self,
        run_dir: Path,
        task: str = "train",  # train | sensitivity
        overrides: Sequence[str] = (),
        hydra_dir: Path | None = None,  # the .hydra/ folder with the composed config
        job_num: int | None = None,  # a job of a multirun ...
        swept_keys: Sequence[str] = (),  # ... the keys its sweep varies ...
        parent_run_id: str | None = None,  # ... and the sweep's MLflow parent run
        changes: Sequence[str] = (),  # "epochs: 3 -> 6" after resume_changed=allow
        pruned: bool = False,  # the run prunes: it writes pruning/ reports (and thinned/ when it thins)
        fold_pairs: list[dict[str, Any]] | None = None,  # fold_batchnorm: the layers folded
        input_shape: Sequence[int] = (),  # one model input, (C, H, W)
        params: dict[str, Any] | None = None,  # the resolved config this run uses
        world_size: int = 1,  # processes of the run (torchrun)
        tags: Sequence[str] = (),  # the user's labels (config `tags`): "word" or "key:value"
    ):
        self.run_dir = Path(run_dir)
        self.task = task
        self.overrides: list[str] = list(overrides)
        self.hydra_dir = hydra_dir
        self.job_num = job_num
        self.swept_keys: list[str] = list(swept_keys)
        self.parent_run_id = parent_run_id
        self.changes: list[str] = list(changes)
        self.pruned = pruned
        self.fold_pairs = fold_pairs
        self.input_shape: tuple[int, ...] = tuple(input_shape)
        self.params: dict[str, Any] = dict(params or {})
        self.world_size = world_size
        self.tags: list[str] = list(tags)
        self.preprocessing: Any = None  # set once the data is read: what a model's inputs go through

    def __repr__(self) -> str:
        return f"RunDescription(run_dir={str(self.run_dir)!r}, task={self.task!r})"
