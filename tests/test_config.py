"""The conf/ tree composes with the schema; mistakes fail at compose time or in validate()."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from framework.config import config_problems, project_root, validate
from framework.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_default_config_composes_with_every_group(compose_config):
    cfg = compose_config()
    for group in ("model", "dataset", "pruner", "schedule", "optimizer", "lr_scheduler", "tracking"):
        assert group in cfg, group
    assert cfg.model.arch == "simple_cnn"
    assert cfg.dataset.name == "digits"
    assert cfg.pruner.name == "none"
    assert cfg.fold_batchnorm is False
    assert cfg.device == "auto"
    assert cfg.resume is None
    validate(cfg)


def test_default_mlflow_store_is_absolute_under_project_outputs(compose_config):
    cfg = compose_config()
    uri = cfg.tracking.uri
    assert uri == f"sqlite:///{project_root()}/outputs/mlflow.db"
    assert Path(uri.removeprefix("sqlite:///")).is_absolute()


@pytest.mark.parametrize("group", ["model", "dataset", "pruner", "schedule", "optimizer", "lr_scheduler", "tracking", "experiment"])
def test_every_option_of_every_group_composes_and_validates(compose_config, group):
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options, group
    for option in options:
        overrides = [f"{group}={option}"]
        if group == "dataset" and option == "imagefolder":
            overrides.append("dataset.root=/some/where")
        cfg = compose_config(overrides)
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        problems = [p for p in config_problems(cfg) if "resume" not in p]
        assert problems == [], (option, problems)


def test_unknown_key_fails_at_compose(compose_config):
    with pytest.raises(ConfigCompositionException, match="pruner.final_sparsty"):
        compose_config(["pruner=agp", "pruner.final_sparsty=0.5"])


def test_wrong_type_fails_at_compose(compose_config):
    with pytest.raises(ConfigCompositionException, match="epochs"):
        compose_config(["epochs=many"])


def test_unknown_group_option_fails_at_compose(compose_config):
    with pytest.raises(ConfigCompositionException, match="agp_filter"):
        compose_config(["pruner=agp_fliter"])


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["pruner=agp", "pruner.final_sparsity=1.2"], "pruner.final_sparsity=1.2 is outside [0, 1)"),
        (["pruner=agp", "pruner.initial_sparsity=-0.1"], "pruner.initial_sparsity=-0.1 is outside [0, 1)"),
        (["pruner=agp", "pruner.initial_sparsity=0.6", "pruner.final_sparsity=0.5"], "pruner.initial_sparsity=0.6 is above"),
        (["pruner=agp", "schedule.starting_epoch=5", "schedule.ending_epoch=5"], "schedule.ending_epoch=5 is not after"),
        (["pruner=agp", "schedule.frequency=0"], "schedule.frequency=0 is invalid"),
        (["pruner=agp", "epochs=5"], "schedule.ending_epoch=10 is after epochs=5"),
        (["pruner=agp", "pruner.structure=rows"], "pruner.structure='rows' is invalid; allowed: fine | filter | channel"),
        (["pruner=agp", "pruner.criterion=l3"], "pruner.criterion='l3' is invalid; allowed: l1 | l2 | random"),
        (["pruner=magnitude", "pruner.structure=filter"], "pruner.structure=filter does not apply to pruner magnitude"),
        (["optimizer.lr=0"], "optimizer.lr=0.0 is invalid"),
        (["optimizer.lr=-1"], "optimizer.lr=-1.0 is invalid"),
        (["epochs=0"], "epochs=0 is invalid"),
        (["dataset.batch_size=0"], "dataset.batch_size=0 is invalid"),
        (["device=tpu"], "device='tpu' is invalid; allowed: auto | cpu | cuda"),
        (["model.pretrained=/no/such/weights.pt"], "model.pretrained='/no/such/weights.pt': no such file"),
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
