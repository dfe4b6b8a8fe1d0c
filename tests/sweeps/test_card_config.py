"""The card presets compose into the sweep they promise; bad card input is one line each, found
before any job (the sweep callback exits 2 on them)."""

from __future__ import annotations

import pytest
from data.test_file_datasets import write_cifar10  # the CIFAR-format writer of the dataset tests
from omegaconf import OmegaConf

from framework.sweeps.card_start import card_start_problems

PRESETS = ("reproduce_distiller_resnet20", "reproduce_depgraph_resnet56", "reproduce_slimming_vgg")


def sweep_of(cfg) -> dict:
    return OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)


@pytest.fixture
def compose_with_hydra():
    """The composed config with its hydra node (the sweeper's params), as the sweep sees it."""
    from conftest import CONF
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def _compose(overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)

    yield _compose
    GlobalHydra.instance().clear()


def test_report_card_sweeps_the_criteria_plus_the_controls_over_ratios_and_seeds(compose_with_hydra):
    cfg = compose_with_hydra(["experiment=report_card"])
    assert sweep_of(cfg) == {
        "pruner/criterion": "l1,l2,taylor,bn_gamma,random",
        "pruner.scope": "layer,global",
        "fold_batchnorm": "false",
        "card.ratio": "2.0,4.0,8.0,16.0,32.0",
        "seed": "0,1,2",
    }
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN" and cfg.dataset._target_ == "framework.data.MNIST1D"
    assert card_start_problems(cfg) == []
    smaller = compose_with_hydra(
        ["experiment=report_card", "card.criteria=[l1]", "card.controls=false", "card.seeds=2"]
    )
    assert sweep_of(smaller)["pruner/criterion"] == "l1" and sweep_of(smaller)["pruner.scope"] == "layer"
    assert sweep_of(smaller)["seed"] == "0,1"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("card.ratios=[1,2]", "card.ratios=[1.0, 2.0] is invalid; allowed: increasing compression ratios > 1"),
        ("card.ratios=[4,2]", "card.ratios=[4.0, 2.0] is invalid"),
        ("card.seeds=1", "card.seeds=1 is invalid: the card gives mean ± std over seeds; allowed: an integer >= 2"),
        ("card.criteria=[l1,magnitude]", "card.criteria: the card cannot compare ['magnitude']"),
        ("card.fold=[true]", "card.fold=[True] with card.criteria ['taylor', 'bn_gamma']: a data-aware criterion"),
        ("pruner.structure=fine", "the card cannot compare pruner.method=level pruner.structure=fine"),
        ("card.ratio_of=flops", "card.ratio_of='flops' is invalid; allowed: params | macs"),
        ("card.solve_steps=0", "card.solve_steps=0 is invalid; allowed: an integer from 1 to 30"),
    ],
)
def test_bad_card_input_is_one_line_before_any_job(compose_with_hydra, override, expected):
    problems = card_start_problems(compose_with_hydra(["experiment=report_card", override]))
    assert len(problems) == 1 and problems[0].startswith(expected) and "\n" not in problems[0]


@pytest.mark.parametrize("preset", PRESETS)
def test_reproduction_presets_state_the_published_figures_and_need_their_files(compose_with_hydra, preset, tmp_path):
    missing = card_start_problems(compose_with_hydra([f"experiment={preset}", f"dataset.root={tmp_path}"]))
    assert len(missing) == 1
    assert f"dataset.root={tmp_path}" in missing[0] and "cifar-10-batches-py/data_batch_1, data_batch_2" in missing[0]
    write_cifar10(tmp_path)
    cfg = compose_with_hydra([f"experiment={preset}", f"dataset.root={tmp_path}"])
    assert card_start_problems(cfg) == []
    published = cfg.card.published
    assert published.label and published.source and 0.9 < published.top1_dense < 0.95 and 0.9 < published.top1_pruned
    assert cfg.card.ratio > 1 and cfg.dataset.val_fraction > 0  # selection on data carved from training
    assert "seed" in sweep_of(cfg)
