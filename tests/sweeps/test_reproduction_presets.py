"""Every reproduction preset composes and runs in its debug=fast form on generated CIFAR-format
files: a job of the preset's sweep (seed 0) runs in-process, trains its seed's dense model first,
prunes it to the ratio the preset asks for, and its card row sits beside the published row.

The debug=fast form (docs/report_card.md): one epoch, a few batches, one dense epoch; the pruning
window moved into that epoch; the models' widths cut so that the suite stays small (the ratio is
solved on the model that runs, so it holds at any width)."""

from __future__ import annotations

import pytest

from framework.sweeps.card import TOP1_LAST, TOP1_SELECTED
from framework.sweeps.card_files import markdown_of
from framework.sweeps.card_runs import card_run, method_label
from framework.sweeps.report_card import card_of
from framework.tracking.params import flatten_config

# preset -> (its debug=fast form's extra overrides, what its ratio counts, the ratio, the published label)
PRESETS = {
    "reproduce_distiller_resnet20": (
        ["schedule.ending_epoch=1", "card.fold=[false]", "model.width=0.5"],
        "macs",
        1.331,
        "Distiller ResNet-20 AGP filters",
    ),
    "reproduce_depgraph_resnet56": (["model.width=0.25"], "macs", 2.13, "DepGraph ResNet-56"),
    "reproduce_slimming_vgg": (
        ["schedule.starting_epoch=0", "schedule.ending_epoch=1", "regularizer.end_epoch=1", "model.width=0.125"],
        "params",
        8.9,
        "network slimming VGG (70 % of channels)",
    ),
}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    from data.test_file_datasets import write_cifar10  # the CIFAR-format writer of the dataset tests

    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root)
    return root


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_reproduction_preset_runs_in_debug_fast_beside_its_published_row(
    preset, cifar_root, run_experiment, tmp_path
):
    extra, ratio_of, ratio, label = PRESETS[preset]
    sweep_dir = tmp_path / "multirun"
    cfg, _, final = run_experiment(
        [
            f"experiment={preset}",
            "debug=fast",
            f"dataset.root={cifar_root}",
            "dataset.val_fraction=0.4",  # the fake copy has 15 training images: 6 validate
            "loader.batch_size=8",
            "deploy.enabled=false",
            f"paths.output_dir={tmp_path}/outputs",
            "progress=false",
            *extra,
        ],
        run_dir=sweep_dir / "0",  # job 0 of the preset's sweep: the dense models live beside it
    )
    assert cfg.card.ratio == ratio and cfg.card.ratio_of == ratio_of and cfg.card.published.label == label
    assert (sweep_dir / "dense" / "seed_0" / "dense.pt").is_file()  # its seed's dense model, trained first
    dense, thinned = final[f"thin/{ratio_of}/dense"], final[f"thin/{ratio_of}/thinned"]
    assert ratio <= dense / thinned < ratio * 1.5  # the solved target gives the asked ratio on this model
    assert {TOP1_LAST, TOP1_SELECTED, "test/top1"} <= set(final)

    params = flatten_config(cfg)
    card = markdown_of(card_of([card_run("job0", params, final, True)], params, f"debug=fast {preset}"))
    rows = [line for line in card.splitlines() if line.startswith("| ")]
    ours = next(row for row in rows if row.startswith(f"| {method_label(params)} | {ratio:g} |"))
    assert f"| {final[TOP1_SELECTED] * 100:.1f} |" in ours
    assert any(row.startswith(f"| published: {label} |") for row in rows)
    assert "Toy pair: no (CIFAR-10" in card
