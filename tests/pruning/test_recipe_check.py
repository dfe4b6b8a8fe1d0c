"""A thinning recipe read from a file sets only widths, in range, fitting the saved weights; every
malformed entry is one line, before anything is allocated (issue 21 item 3)."""

from __future__ import annotations

import copy

import pytest
import torch
from coupling_support import prune
from support import cli_dirs, run_cli

from framework.errors import CheckpointError
from framework.models.simple_cnn import SimpleCNN
from framework.pruning.thinning.thin import apply_recipe, save_thinned, thin


def thinned():
    torch.manual_seed(0)
    model = SimpleCNN(num_classes=10, in_channels=1)
    x = torch.randn(2, 1, 8, 8)
    pruner = prune(model, x, "filter", 0.5)
    return thin(model, pruner.masks, x, graph=pruner.graph)


def tamper(recipe, edit):
    recipe = copy.deepcopy(recipe)
    edit(recipe["modules"])
    return recipe


CASES = {
    "stride": (
        lambda m: m["block1.0"].update(stride=[2, 2]),
        r"module 'block1.0': 'stride' cannot be set by a recipe; allowed for Conv2d: in_channels, out_channels, groups",
    ),
    "padding": (lambda m: m["block1.0"].update(padding=0), r"'padding' cannot be set"),
    "eps": (
        lambda m: m["block1.1"].update(eps=10.0),
        r"module 'block1.1': 'eps' cannot be set by a recipe; allowed for BatchNorm2d: num_features",
    ),
    "momentum": (lambda m: m["block1.1"].update(momentum=1.0), r"'momentum' cannot be set"),
    "dunder": (lambda m: m["block1.0"].update(__class__=1), r"'__class__' cannot be set"),
    "string width": (
        lambda m: m["block1.0"].update(out_channels="8"),
        r"out_channels='8'; expected a whole number from 1 to \d+",
    ),
    "negative width": (
        lambda m: m["block1.1"].update(num_features=-5),
        r"num_features=-5; expected a whole number from 1 to",
    ),
    "huge width": (
        lambda m: m["classifier"].update(in_features=2**40),
        r"in_features=1099511627776; expected a whole number from 1 to",
    ),
    "bool width": (lambda m: m["block1.1"].update(num_features=True), r"num_features=True; expected a whole number"),
    "list entry": (lambda m: m.update({"block1.0": [1, 2]}), r"module 'block1.0' is a list; expected a mapping"),
    "root module": (
        lambda m: m.update({"": {"type": "SimpleCNN", "training": False}}),
        r"only submodules can be resized",
    ),
    "other type": (
        lambda m: m.update({"pool": {"type": "MaxPool2d", "kernel_size": 99}}),
        r"'pool' is a MaxPool2d, which thinning never resizes",
    ),
    "groups": (lambda m: m["block2.0"].update(groups=3), r"groups=3; expected a whole number from 1 to 1"),
    "width not the weights'": (
        lambda m: m["block1.1"].update(num_features=m["block1.1"]["num_features"] - 1),
        r"'block1.1': its widths give weight \[\d+\] but the saved weights have \[\d+\]",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_tampered_recipe_is_one_line_before_anything_is_resized(case):
    result = thinned()
    edit, expected = CASES[case]
    model = SimpleCNN(num_classes=10, in_channels=1)
    before = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=expected) as raised:
        apply_recipe(model, tamper(result.recipe, edit), result.model.state_dict())
    assert "\n" not in str(raised.value)
    assert {name: tuple(p.shape) for name, p in model.state_dict().items()} == before  # nothing resized


def test_modules_that_is_not_a_mapping_is_one_line():
    recipe = dict(thinned().recipe, modules=[["block1.0", {}]])
    with pytest.raises(CheckpointError, match=r"'modules' is a list; expected a mapping"):
        apply_recipe(SimpleCNN(num_classes=10, in_channels=1), recipe)


def test_the_untampered_recipe_still_loads():
    result = thinned()
    model = apply_recipe(SimpleCNN(num_classes=10, in_channels=1), result.recipe, result.model.state_dict())
    model.load_state_dict(result.model.state_dict())


@pytest.mark.parametrize("case", ["stride", "huge width"])
def test_a_tampered_thinned_model_given_as_pretrained_exits_2_with_one_line(tmp_path, case):
    result = thinned()
    edit, expected = CASES[case]
    path = tmp_path / "model.pt"
    save_thinned(path, result.model, tamper(result.recipe, edit))
    run = run_cli([f"pretrained={path}", "tracking=none", "epochs=1", *cli_dirs(tmp_path, mlflow=False)])
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert "'block1.0'" in errors[0] or "'classifier'" in errors[0]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_an_attention_recipe_may_set_only_its_head_count_within_range():
    from torch import nn

    from framework.errors import CheckpointError
    from framework.pruning.thinning.recipe_check import check_recipe

    model = nn.Sequential(nn.MultiheadAttention(8, 2))
    for spec, expected in (({"num_heads": 2**40}, "num_heads=1099511627776"), ({"dropout": 0.5}, "'dropout' cannot")):
        recipe = {"format": 1, "modules": {"0": {"type": "MultiheadAttention", **spec}}}
        with pytest.raises(CheckpointError, match=expected):
            check_recipe(model, recipe)
    check_recipe(model, {"format": 1, "modules": {"0": {"type": "MultiheadAttention", "num_heads": 1}}})
