"""What the runner tells a tracker about a run: a neutral description, no tracker's vocabulary.

A tracker (a ``tracking`` component, see :mod:`framework.tracking.trackers`) decides from it
what to log: MLflow turns it into params, tags, a run name and artifacts; a CSV logger of yours
may read only ``run_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple


class RunDescription:
    """A plain object, not a dataclass: ``hydra.utils.instantiate`` passes it to a tracker's
    ``run`` argument as it is (a dataclass would become a config node)."""

    def __init__(
        self,
        run_dir: Path,
        task: str = "train",  # train | sensitivity
        overrides: Sequence[str] = (),
        hydra_dir: Optional[Path] = None,  # the .hydra/ folder with the composed config
        job_num: Optional[int] = None,  # a job of a multirun ...
        swept_keys: Sequence[str] = (),  # ... the keys its sweep varies ...
        parent_run_id: Optional[str] = None,  # ... and the sweep's MLflow parent run
        changes: Sequence[str] = (),  # "epochs: 3 -> 6" after resume_changed=allow
        pruned: bool = False,  # the run prunes: it writes pruning/ reports (and thinned/ when it thins)
        fold_pairs: Optional[List[Dict[str, Any]]] = None,  # fold_batchnorm: the layers folded
        input_shape: Sequence[int] = (),  # one model input, (C, H, W)
        params: Optional[Dict[str, Any]] = None,  # the resolved config this run uses
        world_size: int = 1,  # processes of the run (torchrun)
    ):
        self.run_dir = Path(run_dir)
        self.task = task
        self.overrides: List[str] = list(overrides)
        self.hydra_dir = hydra_dir
        self.job_num = job_num
        self.swept_keys: List[str] = list(swept_keys)
        self.parent_run_id = parent_run_id
        self.changes: List[str] = list(changes)
        self.pruned = pruned
        self.fold_pairs = fold_pairs
        self.input_shape: Tuple[int, ...] = tuple(input_shape)
        self.params: Dict[str, Any] = dict(params or {})
        self.world_size = world_size
        self.preprocessing: Any = None  # set once the data is read: what a model's inputs go through

    def __repr__(self) -> str:
        return f"RunDescription(run_dir={str(self.run_dir)!r}, task={self.task!r})"
