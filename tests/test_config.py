"""The conf/ tree composes with the schema; mistakes fail at compose time or in validate()."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from framework.config import LM_MODELS, TEXT_DATASET, config_problems, project_root, pruning_window, validate
from framework.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
LANGUAGE_TARGETS = (*LM_MODELS, TEXT_DATASET, "framework.pruning.llm.spec.LLMPruningSpec")
LANGUAGE = ["task=oneshot", "model=causal_lm", "dataset=text", "pruner=wanda"]


def test_default_config_composes_with_every_group(compose_config):
    cfg = compose_config()
    for group in ("model", "dataset", "pruner", "schedule", "optimizer", "lr_scheduler", "tracking"):
        assert group in cfg, group
    assert cfg.model._target_ == "framework.models.SimpleCNN"
    assert cfg.dataset._target_ == "framework.data.Digits"
    assert cfg.pruner.method == "none"
    assert cfg.fold_batchnorm is False
    assert cfg.device == "auto"
    assert cfg.resume is None
    validate(cfg)


def test_default_mlflow_store_is_absolute_under_project_outputs(compose_config):
    cfg = compose_config()
    uri = cfg.tracking.uri
    assert uri == f"sqlite:///{project_root()}/outputs/mlflow.db"
    assert Path(uri.removeprefix("sqlite:///")).is_absolute()


@pytest.mark.parametrize(
    "group",
    ["model", "dataset", "pruner", "schedule", "optimizer", "lr_scheduler", "tracking", "experiment", "hparams_search"],
)
def test_every_option_of_every_group_composes_and_validates(compose_config, group):
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options, group
    for option in options:
        # with a pruner, so that the schedule's rules are checked too
        overrides = [f"{group}={option}"] + (["pruner=agp"] if group == "schedule" else [])
        if group == "dataset" and option == "imagefolder":
            overrides.append("dataset.root=/some/where")
        cfg = compose_config(overrides)
        if OmegaConf.select(cfg, f"{group}._target_") in LANGUAGE_TARGETS:  # task=oneshot's parts, together
            named = ["model.name=/some/where"] if option == "pretrained_lm" else []
            cfg = compose_config([*LANGUAGE, *overrides, *named])
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        problems = [p for p in config_problems(cfg) if "resume" not in p]
        assert problems == [], (option, problems)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["pruner=agp", "pruner.final_sparsty=0.5"], "pruner.final_sparsty"),
        (["model=resnet20", "model.shortcutt=B"], "model.shortcutt"),
        # a key of another option of the same group is unknown too: no union schema
        (["dataset=digits", "dataset.image_size=64"], "dataset.image_size"),
        (["model=simple_cnn", "model.shortcut=B"], "model.shortcut"),
        (["lr_scheduler=none", "lr_scheduler.gamma=0.5"], "lr_scheduler.gamma"),
    ],
)
def test_unknown_key_fails_at_compose(compose_config, overrides, key):
    with pytest.raises(ConfigCompositionException, match=key):
        compose_config(overrides)


def test_wrong_type_of_a_setting_fails_at_compose(compose_config):
    with pytest.raises(ConfigCompositionException, match="epochs"):
        compose_config(["epochs=many"])


def test_unknown_group_option_fails_at_compose(compose_config):
    with pytest.raises(ConfigCompositionException, match="agp_filter"):
        compose_config(["pruner=agp_fliter"])


@pytest.mark.parametrize("pruner", ["agp", "agp_filter", "agp_channel", "level"])
@pytest.mark.parametrize("epochs", [1, 2, 3, 7, 20])
def test_default_schedule_prunes_over_the_first_half_of_any_length(compose_config, pruner, epochs):
    cfg = compose_config([f"pruner={pruner}", f"epochs={epochs}"])
    validate(cfg)
    assert pruning_window(cfg.schedule, cfg.epochs) == (0, max(1, epochs // 2))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["pruner=agp", "pruner.final_sparsity=1.2"], "pruner.final_sparsity=1.2 is outside [0, 1)"),
        (["pruner=agp", "pruner.initial_sparsity=-0.1"], "pruner.initial_sparsity=-0.1 is outside [0, 1)"),
        (
            ["pruner=agp", "pruner.initial_sparsity=0.6", "pruner.final_sparsity=0.5"],
            "pruner.initial_sparsity=0.6 is above",
        ),
        (
            ["pruner=agp", "schedule.starting_epoch=5", "schedule.ending_epoch=5"],
            "schedule.ending_epoch=5 is not after",
        ),
        (["pruner=agp", "schedule.frequency=0"], "schedule.frequency=0 is invalid"),
        (["pruner=agp", "epochs=5", "schedule.ending_epoch=10"], "schedule.ending_epoch=10 is after epochs=5"),
        (
            ["pruner=agp", "epochs=4", "schedule.starting_epoch=3"],
            "schedule.ending_epoch=2 (null: epochs // 2) is not after",
        ),
        (
            ["pruner=agp", "pruner.structure=rows"],
            "pruner.structure='rows' is invalid; allowed: fine | filter | channel",
        ),
        (["pruner=agp", "pruner.method=prune"], "pruner.method='prune' is invalid; allowed: none | level | agp"),
        (
            ["pruner=magnitude", "+pruner.structure=filter"],
            "pruner.structure=filter does not apply to pruner.method=magnitude",
        ),
        (
            ["pruner=agp", "pruner.method=sensitivity"],
            "pruner.method=sensitivity was renamed; use pruner=std_threshold (pruner.method=std_threshold, pruner.std_multiplier=...)",
        ),
        (
            ["pruner=std_threshold", "pruner.std_multiplier=-1"],
            "pruner.std_multiplier=-1 is invalid; allowed: a number >= 0",
        ),
        (
            ["pruner=agp_filter", "pruner.coupling=graph"],
            "pruner.coupling='graph' is invalid; allowed: null | coupled | layer",
        ),
        (["pruner=agp", "pruner.thin=end"], "pruner.thin=end needs coupled filter or channel pruning"),
        (
            ["pruner=agp_filter", "pruner.scope=global", "pruner.round_to=8"],
            "pruner.round_to=8 is not supported with pruner.scope=global",
        ),
        (["pruner=agp", "pruner.max_layer_sparsity=1.5"], "pruner.max_layer_sparsity=1.5 is invalid"),
        (["pruner=level", "schedule.step_frequency=2"], "schedule.step_frequency=2 applies to pruner.method=agp only"),
        (["fold_batchnorm=1"], "fold_batchnorm=1 is invalid; allowed: true | false | activation"),
        (["optimizer.lr=0"], "optimizer.lr=0 is invalid"),
        (["optimizer.lr=-1"], "optimizer.lr=-1 is invalid"),
        (["optimizer.momentum=-1"], "optimizer.momentum=-1 is invalid; allowed: a number in [0, 1)"),
        (["optimizer.weight_decay=nan"], "optimizer.weight_decay=nan is invalid"),
        (["optimizer=adam", "optimizer.betas=[1.5,0.9]"], "optimizer.betas=[1.5, 0.9] is invalid"),
        (["lr_scheduler=step", "lr_scheduler.step_size=0"], "lr_scheduler.step_size=0 is invalid"),
        (["lr_scheduler=step", "lr_scheduler.gamma=-1"], "lr_scheduler.gamma=-1 is invalid"),
        (["lr_scheduler=multistep", "lr_scheduler.milestones=[15,10]"], "lr_scheduler.milestones=[15, 10] is invalid"),
        (["epochs=0"], "epochs=0 is invalid"),
        (["loader.batch_size=0"], "loader.batch_size=0 is invalid"),
        (["device=tpu"], "device='tpu' is invalid; allowed: auto | cpu | cuda"),
        (["pretrained=/no/such/weights.pt"], "pretrained='/no/such/weights.pt': no such file"),
        (["pretrained=/tmp"], "pretrained='/tmp' is a directory"),
        (["resume=/no/such/last.pt"], "resume='/no/such/last.pt': no such checkpoint file"),
    ],
)
def test_validation_names_key_value_and_what_is_allowed(compose_config, overrides, expected):
    cfg = compose_config(overrides)
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    lines = str(error.value).splitlines()
    assert any(expected in line for line in lines), lines
    assert len(lines) == 1, lines  # one mistake, one line


def test_several_mistakes_give_one_line_each(compose_config):
    cfg = compose_config(["pruner=agp", "pruner.final_sparsity=1.5", "optimizer.lr=0", "epochs=0"])
    problems = config_problems(cfg)
    assert len(problems) >= 3
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize("structure", ["filter", "channel"])
def test_agp_with_a_structure_override_is_the_structured_preset(compose_config, structure):
    by_hand = compose_config(["pruner=agp", f"pruner.structure={structure}", "pruner.final_sparsity=0.5"])
    preset = compose_config([f"pruner=agp_{structure}"])
    assert OmegaConf.to_container(by_hand.pruner) == OmegaConf.to_container(preset.pruner)
