"""Where a run writes and how it was asked for, and the run folder's layout, named once.

Every part that writes into or reads from a run folder (the runner, the hooks, the trackers,
recovery, the sweep layer) takes its paths from :class:`RunContext`'s properties; a tool that
has only a folder (``python -m framework.tracking.recover <run dir>``) makes ``RunContext(run_dir)``.
Torch-free and import-free: the foundation every room may stand on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The run folder's files and folders. The names are part of what users see and what earlier runs
# wrote: changing one orphans their files.
CHECKPOINTS = "checkpoints"  # last.pt after every epoch, best.pt
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
THINNED = "thinned"  # the thinned model (model.pt, model.onnx)
DEPLOY = "deploy"  # the deployable model's ONNX files and variants.csv
PRUNING = "pruning"  # per-layer sparsity tables, bar chart, BN-fold pairs
LANGUAGE_MODEL = "language_model"  # a language model run (oneshot, train): the final model's save_pretrained folder
PROFILE = "profile"  # profile_steps: trace.json, ops.txt
SENSITIVITY = "sensitivity"  # task=sensitivity: rows.csv, tables, curves, derived levels
DERIVED_CONF = "conf"  # task=sensitivity: the derived pruner option (--config-dir <run dir>/conf)
METRICS_FILE = "metrics.jsonl"  # every metric, one line per step, whatever the tracker
STATUS_FILE = "run_status.json"  # RUNNING, FINISHED, FAILED or KILLED, for recovery
MLFLOW_RUN_ID_FILE = "mlflow_run_id"  # the MLflow run this run logs to (tracking=mlflow)
DISTRIBUTED_RECORD = "distributed.json"  # several processes: the ranks' mask checks
LOCK_FILE = ".lock"  # one run per folder (framework.process.run_lock)


@dataclass(frozen=True)
class RunContext:
    run_dir: Path
    overrides: list[str] = field(default_factory=list)
    hydra_dir: Path | None = None  # the .hydra/ folder with the composed config
    # a job of a multirun: its number, the keys its sweep varies and the sweep's MLflow parent run
    job_num: int | None = None
    swept_keys: list[str] = field(default_factory=list)
    parent_run_id: str | None = None

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def thinned(self) -> Path:
        return self.run_dir / THINNED

    @property
    def deploy(self) -> Path:
        return self.run_dir / DEPLOY

    @property
    def pruning(self) -> Path:
        return self.run_dir / PRUNING

    @property
    def language_model(self) -> Path:
        return self.run_dir / LANGUAGE_MODEL

    @property
    def profile(self) -> Path:
        return self.run_dir / PROFILE

    @property
    def sensitivity(self) -> Path:
        return self.run_dir / SENSITIVITY

    @property
    def derived_conf(self) -> Path:
        return self.run_dir / DERIVED_CONF

    @property
    def metrics_file(self) -> Path:
        return self.run_dir / METRICS_FILE

    @property
    def status_file(self) -> Path:
        return self.run_dir / STATUS_FILE

    @property
    def mlflow_run_id_file(self) -> Path:
        return self.run_dir / MLFLOW_RUN_ID_FILE

    @property
    def distributed_record(self) -> Path:
        return self.run_dir / DISTRIBUTED_RECORD

    @property
    def lock_file(self) -> Path:
        return self.run_dir / LOCK_FILE
