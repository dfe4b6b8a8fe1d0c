"""The end of a run says where everything is, in one short block (rank 0 only): the run folder,
the checkpoints, the thinned (deployable) model files, the MLflow run and how to open it, and the
headline figures (val/top1, sparsity; params, MACs and speedup when the model was thinned)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from framework.config import project_root
from framework.tracking.mlflow_hook import MLflowHook

# Folders of a run that hold model files a user takes away (the deploy step may add its own).
MODEL_FOLDERS = ("thinned", "deploy")


def headline(history: Sequence[Mapping[str, float]]) -> str:
    """``val/top1 0.9120  sparsity 0.700  params 11.2k -> 3.1k  MACs 1.2M -> 0.3M  speedup x2.10``."""
    final = history[-1] if history else {}
    # the thinning figures belong to the epoch that thinned; the last such epoch is the model kept
    thin = {k: v for epoch in history for k, v in epoch.items() if k.startswith("thin/")}
    parts = [f"val/top1 {final['val/top1']:.4f}"] if "val/top1" in final else []
    if "sparsity/total" in final:
        parts.append(f"sparsity {final['sparsity/total']:.3f}")
    if "thin/params/thinned" in thin:
        parts.append(f"params {_short(thin['thin/params/dense'])} -> {_short(thin['thin/params/thinned'])}")
        parts.append(f"MACs {_short(thin['thin/macs/dense'])} -> {_short(thin['thin/macs/thinned'])}")
        if "thin/eager_speedup_b1" in thin:
            parts.append(f"speedup x{thin['thin/eager_speedup_b1']:.2f} (batch 1)")
    return "  ".join(parts)


def where_everything_is(run_dir: Path, history: Sequence[Mapping[str, float]], trackers: Iterable[Any]) -> str:
    """The block, one fact a line."""
    lines = ["where everything is:", f"  run folder:  {run_dir}"]
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    if checkpoints:
        lines.append(f"  checkpoints: {run_dir / 'checkpoints'} ({', '.join(checkpoints)})")
    for folder in MODEL_FOLDERS:
        files = sorted(p.name for p in (run_dir / folder).glob("*") if p.is_file())
        if files:
            lines.append(f"  {folder} model: {run_dir / folder} ({', '.join(files)})")
    if (run_dir / "profile").is_dir():
        lines.append(f"  profile:     {run_dir / 'profile'} (trace.json: chrome://tracing or Perfetto)")
    for tracker in trackers:
        lines.extend(f"  {line}" for line in _tracker_lines(tracker))
    figures = headline(history)
    if figures:
        lines.append(f"  results:     {figures}")
    return "\n".join(lines)


def _tracker_lines(tracker: Any) -> list[str]:
    if not isinstance(tracker, MLflowHook) or tracker.run_id is None:
        return []
    uri = str(tracker.uri)
    line = f"MLflow run:  {tracker.run_id} (experiment {tracker.experiment!r})"
    if uri.startswith(("http://", "https://")):
        return [line, f"MLflow UI:   {uri.rstrip('/')}/#/experiments/{tracker.experiment_id}/runs/{tracker.run_id}"]
    default_store = f"sqlite:///{project_root()}/outputs/mlflow.db"
    in_clone = (project_root() / "Makefile").is_file() and uri == default_store
    opener = "make ui" if in_clone else f"mlflow ui --backend-store-uri {uri}"
    return [line, f"MLflow UI:   {opener}  (then http://127.0.0.1:5000)"]


def _short(count: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.2f}{unit}"
    return f"{count:.0f}"
