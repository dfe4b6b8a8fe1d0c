"""Every option of every component group composes and builds; component mistakes are one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from framework.components import build_component, component_problems
from framework.config import LM_MODELS, TEXT_DATASET, pruning_window, validate
from framework.data import DataSource, as_data_source
from framework.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def option_target(group: str, option: str) -> str | None:
    """The option's ``_target_``, following its defaults (an option builds on a sibling)."""
    import yaml

    node = yaml.safe_load((CONF / group / f"{option}.yaml").read_text()) or {}
    node = node.get(group, node) if group == "dataset" else node  # dataset options are _global_
    if "_target_" in node:
        return node["_target_"]
    parents = [d for d in node.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    return option_target(group, parents[0]) if parents else None


# task=oneshot's options (a causal LM, text, an LLM pruner): tested below and in tests/runner/test_oneshot_runs.py
LANGUAGE_TARGETS = (*LM_MODELS, TEXT_DATASET, "framework.pruning.llm.spec.LLMPruningSpec")


def image_options(group: str) -> list[str]:
    return [option for option in options(group) if option_target(group, option) not in LANGUAGE_TARGETS]


def language_options(group: str) -> list[str]:
    return [option for option in options(group) if option_target(group, option) in LANGUAGE_TARGETS]


def build_model(cfg, shape=(3, 16, 16), classes=5):
    return build_component("model", cfg.model, num_classes=classes, in_channels=shape[0], input_shape=shape)


# models for 1-D signals (dataset=mnist1d: one channel of 40 samples) take (C, L) inputs
SIGNAL_MODELS = {"conv1d_net": (1, 40)}


@pytest.mark.parametrize("option", image_options("model"))
def test_every_model_option_builds_a_module_for_the_dataset(compose_config, option):
    cfg = compose_config([f"model={option}"])
    torch.manual_seed(0)
    shape = SIGNAL_MODELS.get(option, (3, 16, 16))
    model = build_model(cfg, shape).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 5)


@pytest.mark.parametrize("option", image_options("dataset"))
def test_every_dataset_option_builds_a_source_without_reading_data(compose_config, option, tmp_path):
    for split in ("train", "val"):  # an image tree's classes are its folders (no images needed)
        (tmp_path / split / "cat").mkdir(parents=True)
    cfg = compose_config(
        [f"dataset={option}", f"dataset.root={tmp_path}"]
        if option in ("cifar10", "mnist", "imagefolder")
        else [f"dataset={option}"]
    )
    source = as_data_source(build_component("dataset", cfg.dataset), cfg.dataset._target_)
    assert isinstance(source, DataSource)
    assert len(source.input_shape) == (2 if option == "mnist1d" else 3)  # (C, L) signals, (C, H, W) images
    assert cfg.loader.batch_size >= 1  # every dataset option sets its loader
    if option in ("digits", "synthetic"):  # embedded data: loads here
        bundle = source.load()
        assert bundle.num_classes == source.num_classes and len(bundle.train) > 0


@pytest.mark.parametrize("optimizer", options("optimizer"))
@pytest.mark.parametrize("scheduler", options("lr_scheduler"))
def test_every_optimizer_and_scheduler_option_builds_and_steps(compose_config, optimizer, scheduler):
    cfg = compose_config([f"optimizer={optimizer}", f"lr_scheduler={scheduler}", "epochs=4"])
    model = torch.nn.Linear(3, 2)
    built = build_component("optimizer", cfg.optimizer, params=model.parameters())
    assert isinstance(built, torch.optim.Optimizer)
    assert built.param_groups[0]["lr"] == cfg.optimizer.lr
    if not cfg.lr_scheduler:
        assert scheduler == "none"
        return
    schedule = build_component("lr_scheduler", cfg.lr_scheduler, optimizer=built)
    built.step()
    schedule.step()
    assert built.param_groups[0]["lr"] <= cfg.optimizer.lr


def ranks_with_a_criterion(pruner: str) -> bool:
    """Whether the option has a criterion: its own defaults list names one, or the option it builds
    on (a sibling named in that list) has one."""
    defaults = OmegaConf.to_container(OmegaConf.load(CONF / "pruner" / f"{pruner}.yaml")).get("defaults", [])
    return any(
        (isinstance(entry, dict) and "criterion" in entry)
        or (isinstance(entry, str) and (CONF / "pruner" / f"{entry}.yaml").exists() and ranks_with_a_criterion(entry))
        for entry in defaults
    )


def preset_structure(pruner: str) -> str:
    """The preset's structure, following its defaults (presets inherit from level.yaml)."""
    import yaml

    node = yaml.safe_load((CONF / "pruner" / f"{pruner}.yaml").read_text()) or {}
    if "structure" in node:
        return node["structure"]
    parents = [d for d in node.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    return preset_structure(parents[0]) if parents else "fine"


def criterion_fits(criterion: str | None, structure: str) -> bool:
    """Data-aware criteria name the structures they rank (the others are refused in one line,
    tested in tests/pruning/test_data_criteria.py); weight criteria rank any structure."""
    from framework.pruning.scores import data_criteria

    for value in vars(data_criteria).values():
        if isinstance(value, type) and issubclass(value, data_criteria.DataCriterion) and value.name == criterion:
            return structure in value.structures
    return True


PRUNER_CASES = [
    [f"pruner={pruner}"] + ([f"pruner/criterion={criterion}"] if ranks_with_a_criterion(pruner) else [])
    for pruner in image_options("pruner")
    for criterion in (options("pruner/criterion") if ranks_with_a_criterion(pruner) else [None])
    if criterion_fits(criterion, preset_structure(pruner))
]


@pytest.mark.parametrize("overrides", PRUNER_CASES, ids=" ".join)
def test_every_pruner_and_criterion_option_builds_and_prunes(compose_config, overrides):
    pruner = overrides[0].split("=")[1]
    # heads are found in attention blocks: a head preset prunes the small transformer
    model = ["model=vit_tiny"] if preset_structure(pruner) == "head" else []
    # N:M blocks run along the input dimension: the 3-channel first conv is left out, as the preset says
    model += ["pruner.exclude=[block1.0.weight]"] if preset_structure(pruner) == "nm" else []
    cfg = compose_config(overrides + model + ["epochs=2"])
    validate(cfg)
    model = build_model(cfg)
    start, end = pruning_window(cfg.schedule, cfg.epochs)
    built = build_component(
        "pruner",
        cfg.pruner,
        model=model,
        starting_epoch=start,
        ending_epoch=end,
        frequency=cfg.schedule.frequency,
        step_frequency=cfg.schedule.step_frequency,
        fold_batchnorm=False,
        input_shape=(3, 16, 16),
    )
    # data-aware criteria read a few training batches (the runner gives them the training split)
    built.set_calibration_data([(torch.randn(4, 3, 16, 16), torch.randint(0, 5, (4,)))])
    built.on_epoch_start(0)
    if pruner == "none":
        assert built.sparsity()["total"] == 0.0
    else:
        assert built.sparsity()["total"] > 0.0


@pytest.mark.parametrize("option", options("experiment") + options("schedule") + options("tracking"))
def test_every_preset_schedule_and_tracking_option_composes_validates_and_builds(compose_config, option, tmp_path):
    group = next(g for g in ("experiment", "schedule", "tracking") if (CONF / g / f"{option}.yaml").exists())
    cfg = compose_config(
        [f"{group}={option}", "pruner=agp", "epochs=4"] if group == "schedule" else [f"{group}={option}"]
    )
    OmegaConf.to_container(cfg, resolve=True)
    validate(cfg)
    if cfg.model._target_ in LM_MODELS:
        # a language model preset reads its model from a folder: built in tests/runner/test_lm_train.py
        assert cfg.dataset._target_ == "framework.data.text.Text", cfg.dataset
        return
    model = build_model(cfg)
    assert isinstance(model, torch.nn.Module)


LANGUAGE_MODELS = [option for option in language_options("model") if option != "pretrained_lm"]  # it needs a folder


@pytest.mark.parametrize("option", LANGUAGE_MODELS)
def test_every_language_model_option_builds_a_causal_lm(compose_config, option):
    cfg = compose_config(["task=oneshot", f"model={option}", "dataset=text", "pruner=wanda"])
    validate(cfg)
    torch.manual_seed(0)
    model = build_component("model", cfg.model).eval()
    with torch.no_grad():
        assert model(input_ids=torch.zeros(1, 5, dtype=torch.long)).logits.shape == (1, 5, 256)
    assert model.config.model_type == cfg.model.architecture


@pytest.mark.parametrize("option", language_options("pruner"))
def test_every_language_pruner_option_prunes_a_tiny_model(compose_config, option):
    from llm_models import tiny_lm, windows

    from framework.pruning.llm import make_spec, prune_llm
    from framework.runner.parts import resolved

    cfg = compose_config(["task=oneshot", "model=causal_lm", "dataset=text", f"pruner={option}"])
    validate(cfg)
    spec = make_spec(resolved(cfg.pruner))
    model = tiny_lm("mixtral" if spec.structure == "expert" else "llama")
    before = sum(p.numel() for p in model.parameters())
    result = prune_llm(model, spec, windows() if spec.calibration_batches else None)
    if result.plan is not None:  # structured: thinned
        assert sum(p.numel() for p in model.parameters()) < before
    else:
        kept = [mask.float().mean() for mask in result.masks.values()]
        assert kept and all(value == pytest.approx(1 - spec.final_sparsity) for value in kept)


def test_unknown_argument_names_the_key_and_lists_the_accepted_ones(compose_config):
    cfg = compose_config(["model=resnet20", "+model.widht=2"])
    problems = component_problems("model", cfg.model, supplied={"num_classes", "in_channels"})
    assert problems == [
        "model.widht is not an argument of framework.models.CifarResNet; accepted: depth, width, shortcut"
    ]


def test_wrong_type_is_named_with_the_expected_type(compose_config):
    cfg = compose_config(["model.width=wide"])
    problems = component_problems("model", cfg.model)
    assert problems == ["model.width='wide' has the wrong type for framework.models.SimpleCNN; expected float"]


def test_target_that_cannot_be_imported_is_one_line(compose_config):
    cfg = compose_config(["model._target_=my_nets.Missing"])
    with pytest.raises(ConfigError) as info:
        build_model(cfg)
    assert str(info.value).startswith("model._target_='my_nets.Missing' cannot be imported: ")
    assert "\n" not in str(info.value)


def test_errors_raised_by_the_target_are_keyed_by_the_config_path(compose_config):
    cfg = compose_config(["optimizer=adam", "+optimizer.eps=-1.0"])
    with pytest.raises(ConfigError) as info:
        build_component("optimizer", cfg.optimizer, params=torch.nn.Linear(2, 2).parameters())
    assert str(info.value) == "optimizer (torch.optim.Adam): Invalid epsilon value: -1.0"


def test_nested_criterion_component_is_checked_too(compose_config):
    cfg = compose_config(["pruner=agp", "+pruner.criterion.power=2"])
    problems = component_problems("pruner", cfg.pruner, supplied={"model"})
    assert problems == [
        "pruner.criterion.power is not an argument of framework.pruning.scores.criteria.L1Criterion; accepted: (none)"
    ]


def test_a_target_hydra_blocklists_is_one_whole_sentence():
    """Hydra wraps its message over lines; the first line alone stopped mid-sentence (issue 29 item 9)."""
    from omegaconf import OmegaConf

    from framework.components import build_component
    from framework.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        build_component("model", OmegaConf.create({"_target_": "builtins.eval"}))
    assert str(error.value) == (
        "model (builtins.eval): Target 'builtins.eval' is blocklisted because it allows config data to control "
        "executable behavior or belongs to an execution-capable target family."
    )
