"""recover finds a run's store under the run's own paths.output_dir (the default store's URI is
``sqlite:///${paths.output_dir}/mlflow.db`` in the saved config)."""

from __future__ import annotations

from framework.config import project_root
from framework.tracking.recover import _run_config


def _write_config(run_dir, paths: str) -> None:
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(
        "tracking:\n  _target_: framework.tracking.trackers.mlflow_tracking\n"
        "  uri: sqlite:///${paths.output_dir}/mlflow.db\n  experiment: e\n" + paths
    )


def test_the_run_s_output_dir_or_the_default_one_resolves_the_store(tmp_path):
    _write_config(tmp_path / "moved", "paths:\n  output_dir: /data/runs\n")
    assert _run_config(tmp_path / "moved")["uri"] == "sqlite:////data/runs/mlflow.db"
    _write_config(tmp_path / "default", "paths:\n  output_dir: ${project_root:}/outputs\n")
    assert _run_config(tmp_path / "default")["uri"] == f"sqlite:///{project_root()}/outputs/mlflow.db"
