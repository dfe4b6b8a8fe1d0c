"""The ``tracking`` options as components: each builds a list of trackers from its arguments and
the runner's neutral description of the run; the MLflow one decides its own tags and connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.components import build_component
from framework.errors import ConfigError
from framework.run_context import RunContext
from framework.tracking.description import RunDescription
from framework.tracking.mlflow_tracker import MLflowTracker
from framework.tracking.trackers import as_trackers, uses_mlflow


def describe(tmp_path: Path, task: str = "train", **context) -> RunDescription:
    params = {"model": {"_target_": "framework.models.SimpleCNN", "width": 8}, "epochs": 2}
    run_context = RunContext(tmp_path / "run", overrides=["epochs=2"], **context)
    return RunDescription(run_context, task=task, params=params)


def test_none_builds_no_tracker(compose_config, tmp_path):
    cfg = compose_config(["tracking=none"])
    assert not uses_mlflow(cfg.tracking)
    assert build_component("tracking", cfg.tracking, run=describe(tmp_path)) == []


def test_mlflow_builds_one_connected_tracker_whose_tags_follow_the_description(compose_config, shared_store, tmp_path):
    cfg = compose_config([f"tracking.uri=sqlite:///{shared_store}/mlflow.db", "tracking.experiment=x"])
    assert uses_mlflow(cfg.tracking)
    run = RunDescription(
        RunContext(tmp_path / "run", overrides=["epochs=2"], job_num=3, parent_run_id="abc"),
        params={"model": {"_target_": "framework.models.SimpleCNN", "width": 8}, "epochs": 2},
        world_size=2,
        fold_pairs=[{"weight": "a", "bn": "b"}],
        changes=["epochs: 1 -> 2"],
    )
    [tracker] = build_component("tracking", cfg.tracking, run=run)
    assert isinstance(tracker, MLflowTracker) and tracker.experiment == "x" and tracker.uri.endswith("mlflow.db")
    assert tracker.experiment_id is not None  # connected: the store exists and holds the experiment
    assert tracker.params == {"model._target_": "framework.models.SimpleCNN", "model.width": "8", "epochs": "2"}
    assert tracker.tags["hydra.job.num"] == "3" and tracker.tags["mlflow.parentRunId"] == "abc"
    assert tracker.tags["distributed.world_size"] == "2" and tracker.tags["fold_batchnorm.folded_layers"] == "1"
    assert tracker.tags["resume.changed"] == "epochs: 1 -> 2" and tracker.run_name == "epochs=2"
    assert tracker.logs_models and tracker.where() == []  # no run yet, nothing to point at

    [tracker] = build_component("tracking", cfg.tracking, run=describe(tmp_path, task="sensitivity"))
    assert "hydra.job.num" not in tracker.tags and "distributed.world_size" not in tracker.tags


def test_a_tracking_component_that_gives_no_tracker_is_one_line_naming_what_it_lacks():
    class OldStyleHook:  # a loop hook, as trackers were written before the Tracker protocol
        def after_epoch(self, trainer): ...

    class Complete:
        def start(self, step): ...
        def log_metrics(self, metrics, step): ...
        def log_files(self, files): ...
        def log_model(self, model): ...
        def finish(self, status, error=None): ...
        def where(self): ...

    assert len(as_trackers([Complete(), Complete()], "x.Y")) == 2 and as_trackers(None, "x.Y") == []
    with pytest.raises(ConfigError) as error:
        as_trackers(OldStyleHook(), "my_tracker.OldStyleHook")
    assert str(error.value) == (
        "tracking._target_=my_tracker.OldStyleHook gave a OldStyleHook without start, log_metrics, log_files, "
        "log_model, finish, where; allowed: a tracker with start, log_metrics, log_files, log_model, finish, "
        "where (framework.tracking.Tracker, see docs/library.md)"
    )


def test_a_tracking_node_without_target_or_with_a_stray_key_is_one_line(compose_config, tmp_path):
    from framework.config import config_problems

    cfg = compose_config(["tracking=none", "+tracking.uri=x"])
    with pytest.raises(
        ConfigError, match=r"^tracking.uri is not an argument of framework.tracking.trackers.no_tracking"
    ):
        build_component("tracking", cfg.tracking, run=describe(tmp_path))
    cfg = compose_config(["tracking=none", "~tracking._target_"])
    assert "tracking._target_ is missing; allowed: the import path of a class or function" in config_problems(cfg)
