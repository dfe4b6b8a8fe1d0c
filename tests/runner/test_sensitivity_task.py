"""task=sensitivity end to end: files in MLflow for the three structures; a derived config trains to its budget."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from support import ROOT

from framework.errors import SecateursError

CONF = ROOT / "conf"

SMALL = ["model.width=0.25", "progress=false"]


@pytest.fixture(scope="module")
def dense_checkpoint(tmp_path_factory):
    """One small dense model for the whole module (training it is the slow part)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from framework.run_context import RunContext
    from framework.runner import run

    run_dir = tmp_path_factory.mktemp("dense")
    overrides = [*SMALL, "tracking=none", "epochs=2"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    GlobalHydra.instance().clear()
    run(cfg, RunContext(run_dir=run_dir, overrides=overrides))
    return run_dir / "checkpoints" / "last.pt"


def test_sensitivity_writes_csv_table_and_plot_into_mlflow_for_all_three_structures(
    run_experiment, dense_checkpoint, tracking_overrides, shared_store, tmp_path
):
    client = MlflowClient(tracking_uri=f"sqlite:///{shared_store}/mlflow.db")
    for structure in ("fine", "filter", "channel"):
        run_dir = tmp_path / f"sens_{structure}"
        overrides = [
            *SMALL,
            *tracking_overrides,
            "task=sensitivity",
            f"pretrained={dense_checkpoint}",
            "pruner=level",
            f"pruner.structure={structure}",
            "sensitivity.levels=[0.3,0.7]",
        ]
        _, _, result = run_experiment(overrides, run_dir=run_dir)
        assert 0.5 < result["sensitivity/dense_top1"] <= 1.0
        run_id = (run_dir / "mlflow_run_id").read_text().strip()
        logged = {a.path for a in client.list_artifacts(run_id, "sensitivity")}
        for name in ("sensitivity.csv", "sensitivity.md", "sensitivity.png"):
            assert f"sensitivity/{name}" in logged, (structure, logged)
        table = (run_dir / "sensitivity" / "sensitivity.md").read_text()
        units = ["block1.0", "block2.0", "block3.0"] + (["classifier"] if structure == "fine" else [])
        if structure == "channel":
            units = ["block1.0", "block2.0", "block3.0"]  # groups named by their producer; consumers are ranked
        for unit in units:
            assert f"| {unit}" in table, (structure, table)
        metrics = client.get_run(run_id).data.metrics
        assert any(key.startswith("sensitivity/") and key.endswith("/top1") for key in metrics)
        assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.parametrize(
    "override, message",
    [
        ("sensitivity.levels=[0.5,1.0]", "sensitivity.levels=[0.5, 1.0] is invalid"),
        ("sensitivity.workers=0", "sensitivity.workers=0 is invalid"),
        (
            "sensitivity.budget_kind=energy",
            "sensitivity.budget_kind='energy' is invalid; allowed: sparsity | params | macs | top1_drop",
        ),
        ("pruner=none", "task=sensitivity needs a ranking pruner"),
        ("pruner.scope=global", "pruner.scope=global does not apply"),
    ],
)
def test_bad_analysis_settings_are_one_line_each(compose_config, override, message):
    from framework.config import config_problems

    base = ["task=sensitivity", "pruner=level"]
    problems = config_problems(compose_config([*base, override]))
    assert len(problems) == 1 and message in problems[0], problems


def test_fold_batchnorm_and_task_values_are_checked(compose_config):
    from framework.config import config_problems

    assert config_problems(compose_config(["fold_batchnorm=activation", "pruner=agp"])) == []
    assert config_problems(compose_config(["fold_batchnorm=maybe"])) == [
        "fold_batchnorm='maybe' is invalid; allowed: true | false | activation"
    ]
    assert config_problems(compose_config(["task=prune"])) == [
        "task='prune' is invalid; allowed: train | sensitivity | eval | oneshot"
    ]


def test_a_rerun_with_other_settings_in_the_same_folder_is_refused(run_experiment, dense_checkpoint, tmp_path):
    base = [
        *SMALL,
        "tracking=none",
        "task=sensitivity",
        f"pretrained={dense_checkpoint}",
        "pruner=level",
        "sensitivity.levels=[0.5]",
    ]
    run_experiment(base, run_dir=tmp_path / "sens")
    with pytest.raises(SecateursError, match="holds an analysis with other settings"):
        run_experiment([*base, "pruner.structure=filter"], run_dir=tmp_path / "sens")


@pytest.mark.slow
@pytest.mark.parametrize("structure", ["fine", "filter"])
def test_derived_config_meets_its_sparsity_budget_when_trained(
    run_experiment, compose_config, dense_checkpoint, tmp_path, structure
):
    from framework.run_context import RunContext
    from framework.runner import run

    budget = 0.4
    sens_dir = tmp_path / "sens"
    run_experiment(
        [
            *SMALL,
            "tracking=none",
            "task=sensitivity",
            f"pretrained={dense_checkpoint}",
            "pruner=level",
            f"pruner.structure={structure}",
            "sensitivity.levels=[0.2,0.4,0.6,0.8]",
            f"sensitivity.budget={budget}",
            "sensitivity.name=small",
        ],
        run_dir=sens_dir,
    )
    derived = OmegaConf.load(sens_dir / "conf" / "pruner" / "derived" / "small.yaml")
    assert derived.method == "agp" and derived.levels
    command = (sens_dir / "sensitivity" / "derived_command.txt").read_text()
    assert f"--config-dir {sens_dir / 'conf'} pruner=derived/small pretrained=" in command
    # what the command does, composed in-process: the run dir's conf/ on the search path
    overrides = [
        *SMALL,
        "tracking=none",
        f"hydra.searchpath=[file://{sens_dir / 'conf'}]",
        "pruner=derived/small",
        f"pretrained={dense_checkpoint}",
        "epochs=2",
        "pruner.thin=never",
    ]
    cfg = compose_config(overrides)
    assert cfg.pruner.levels == derived.levels
    final = run(cfg, RunContext(run_dir=tmp_path / "train", overrides=overrides))
    assert final["sparsity/total"] >= budget
    assert final["sparsity/total"] <= budget + 0.25  # the levels' grid (0.2 steps) bounds the overshoot


def test_a_latency_budget_needs_coupled_widths_and_milliseconds(compose_config):
    from framework.config import config_problems

    base = ["task=sensitivity", "pruner=level", "sensitivity.budget_kind=latency_ms"]
    assert config_problems(compose_config([*base, "pruner.structure=filter", "sensitivity.budget=0.5"])) == []
    (problem,) = config_problems(compose_config([*base, "sensitivity.budget=0.5"]))
    assert problem.startswith("sensitivity.budget_kind=latency_ms predicts the latency") and "structure=fine" in problem
    (problem,) = config_problems(compose_config([*base, "pruner.structure=filter", "sensitivity.budget=-1"]))
    assert "sensitivity.budget=-1.0 is invalid; allowed: null or a number of milliseconds > 0" in problem


def test_levels_derived_for_a_budget_in_milliseconds_train_to_a_thinned_model_within_it(
    run_experiment, compose_config, tmp_path
):
    """The analysis picks levels by top-1 per millisecond on a latency table (a synthetic one: the
    model's MACs read as milliseconds); the derived config, trained, thins to a model the table
    predicts within the budget, and that run reports the prediction beside its measurement."""
    import dataclasses

    from framework.deploy.mac_table import mac_table
    from framework.models import SimpleCNN

    table = dataclasses.replace(mac_table(SimpleCNN(10, 1, width=0.25), (1, 8, 8)), runtime="eager", unit="ms")
    table.save(tmp_path / "table.json")
    budget = 0.5 * table.predict()
    sens_dir = tmp_path / "sens"
    base = [
        *SMALL,
        "tracking=none",
        "pruner=level",
        "pruner.structure=filter",
        f"pruner.latency_table={tmp_path / 'table.json'}",
    ]
    _, _, result = run_experiment(
        [
            *base,
            "task=sensitivity",
            "sensitivity.levels=[0.5,0.75]",
            "sensitivity.budget_kind=latency_ms",
            f"sensitivity.budget={budget}",
            "sensitivity.name=fast",
        ],
        run_dir=sens_dir,
    )
    assert result["derived/dense_ms"] == pytest.approx(table.predict())
    assert result["derived/predicted_ms"] <= budget
    assert (
        "Latency predicted by the table with every unit pruned at once"
        in (sens_dir / "sensitivity" / "derived.md").read_text()
    )
    overrides = [
        *SMALL,
        "tracking=none",
        f"hydra.searchpath=[file://{sens_dir / 'conf'}]",
        "pruner=derived/fast",
        "epochs=1",
        "loader.limit_train_batches=2",
        "loader.limit_val_batches=1",
        "deploy.enabled=false",
    ]
    _, _, final = run_experiment(overrides, run_dir=tmp_path / "train")
    assert final["latency/predicted_ms/thinned"] == pytest.approx(result["derived/predicted_ms"])
    assert final["latency/measured_ms/thinned"] > 0


def test_a_budget_in_milliseconds_out_of_the_table_s_reach_stops_before_any_data(run_experiment, tmp_path):
    import dataclasses

    from framework.deploy.mac_table import mac_table
    from framework.errors import ConfigError
    from framework.models import SimpleCNN

    table = dataclasses.replace(mac_table(SimpleCNN(10, 1, width=0.25), (1, 8, 8)), runtime="eager", unit="ms")
    table.save(tmp_path / "table.json")
    overrides = [*SMALL, "tracking=none", "task=sensitivity", "pruner=level", "pruner.structure=filter"]
    overrides += [f"pruner.latency_table={tmp_path / 'table.json'}", "sensitivity.budget_kind=latency_ms"]
    with pytest.raises(ConfigError, match=r"sensitivity.budget=\S+ \(latency_ms\) is out of the latency table's reach"):
        run_experiment([*overrides, f"sensitivity.budget={2 * table.predict()}"], run_dir=tmp_path / "sens")
    assert not (tmp_path / "sens" / "sensitivity").exists()
