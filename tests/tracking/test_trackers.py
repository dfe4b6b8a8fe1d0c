"""The ``tracking`` options as components: each builds a list of loop hooks from its arguments and
the runner's neutral description of the run; the MLflow one decides its own tags and artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.components import build_component
from framework.errors import ConfigError
from framework.tracking.description import RunDescription
from framework.tracking.mlflow_hook import MLflowHook
from framework.tracking.trackers import uses_mlflow


def describe(tmp_path: Path, **kw) -> RunDescription:
    params = {"model": {"_target_": "framework.models.SimpleCNN", "width": 8}, "epochs": 2}
    return RunDescription(run_dir=tmp_path / "run", overrides=["epochs=2"], params=params, **kw)


def test_none_builds_no_hook(compose_config, tmp_path):
    cfg = compose_config(["tracking=none"])
    assert not uses_mlflow(cfg.tracking)
    assert build_component("tracking", cfg.tracking, run=describe(tmp_path)) == []


def test_mlflow_builds_one_hook_whose_tags_and_artifacts_follow_the_description(compose_config, tmp_path):
    cfg = compose_config([f"tracking.uri=sqlite:///{tmp_path}/m.db", "tracking.experiment=x"])
    assert uses_mlflow(cfg.tracking)
    run = describe(
        tmp_path,
        job_num=3,
        parent_run_id="abc",
        world_size=2,
        pruned=True,
        fold_pairs=[{"weight": "a", "bn": "b"}],
        changes=["epochs: 1 -> 2"],
    )
    [hook] = build_component("tracking", cfg.tracking, run=run)
    assert isinstance(hook, MLflowHook) and hook.experiment == "x" and hook.uri.endswith("m.db")
    assert hook.params == {"model._target_": "framework.models.SimpleCNN", "model.width": "8", "epochs": "2"}
    assert hook.tags["hydra.job.num"] == "3" and hook.tags["mlflow.parentRunId"] == "abc"
    assert hook.tags["distributed.world_size"] == "2" and hook.tags["fold_batchnorm.folded_layers"] == "1"
    assert hook.tags["resume.changed"] == "epochs: 1 -> 2" and hook.run_name == "epochs=2"
    assert [a for _, a in hook.artifacts] == ["checkpoints", "", "deploy", "pruning", "thinned"] and hook.log_model

    sensitivity = describe(tmp_path, task="sensitivity")
    [hook] = build_component("tracking", cfg.tracking, run=sensitivity)
    assert [a for _, a in hook.artifacts] == ["sensitivity", "conf"] and not hook.log_model
    assert "hydra.job.num" not in hook.tags and "distributed.world_size" not in hook.tags


def test_a_tracking_node_without_target_or_with_a_stray_key_is_one_line(compose_config, tmp_path):
    from framework.config import config_problems

    cfg = compose_config(["tracking=none", "+tracking.uri=x"])
    with pytest.raises(
        ConfigError, match=r"^tracking.uri is not an argument of framework.tracking.trackers.no_tracking"
    ):
        build_component("tracking", cfg.tracking, run=describe(tmp_path))
    cfg = compose_config(["tracking=none", "~tracking._target_"])
    assert "tracking._target_ is missing; allowed: the import path of a class or function" in config_problems(cfg)
