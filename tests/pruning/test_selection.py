"""Selection: glob patterns, exclude, levels, DataParallel prefixes, error messages."""

import pytest
import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.selection import resolve_levels, select_parameters


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2))
        self.up = nn.ConvTranspose2d(4, 2, 2)
        self.classifier = nn.Linear(8, 2)


def names(selected):
    return [p.name for p in selected]


def test_default_selects_conv_transpose_and_linear_weights_only():
    assert names(select_parameters(Small(), "filter")) == [
        "features.0.weight",
        "features.3.weight",
        "up.weight",
        "classifier.weight",
    ]


def test_patterns_and_exclude():
    model = Small()
    selected = select_parameters(model, "fine", weights=["features.*.weight"], exclude=["features.1.*"])
    assert names(selected) == ["features.0.weight", "features.3.weight"]
    assert selected[0].layer is model.features[0] and selected[0].attribute == "weight"
    assert names(select_parameters(model, "fine", weights=None, exclude=["classifier.*", "up.*"])) == [
        "features.0.weight",
        "features.3.weight",
    ]


def test_data_parallel_prefix_is_optional_both_ways():
    wrapped = nn.DataParallel(Small())
    assert names(select_parameters(wrapped, "filter", weights=["classifier.weight"])) == ["module.classifier.weight"]
    assert names(select_parameters(Small(), "filter", weights=["module.classifier.weight"])) == ["classifier.weight"]
    assert len(select_parameters(wrapped, "channel")) == 4


def test_pattern_matching_nothing_names_the_closest_parameters():
    with pytest.raises(PruningError) as error:
        select_parameters(Small(), "fine", weights=["classifer.weight"])
    message = str(error.value)
    assert "pruner.weights pattern 'classifer.weight' matches none" in message
    assert "classifier.weight" in message
    assert "\n" not in message


def test_exclude_matching_nothing_is_an_error():
    with pytest.raises(PruningError, match="pruner.exclude pattern 'feature.0.weight'.*features.0.weight"):
        select_parameters(Small(), "fine", exclude=["feature.0.weight"])


def test_structured_pruning_rejects_non_layer_weights_by_name():
    with pytest.raises(PruningError) as error:
        select_parameters(Small(), "filter", weights=["features.*"])
    message = str(error.value)
    assert "features.0.bias" in message and "features.1.weight" in message
    assert "features.0.weight" not in message.split("cannot prune")[1].split(";")[0]


def test_fine_accepts_any_selected_parameter():
    assert names(select_parameters(Small(), "fine", weights=["features.1.*"])) == [
        "features.1.weight",
        "features.1.bias",
    ]


def test_empty_selection_is_an_error():
    with pytest.raises(PruningError, match="leaves no parameter to prune"):
        select_parameters(Small(), "fine", weights=["up.weight"], exclude=["up.*"])


def test_levels_first_match_wins_and_default_applies():
    names_ = ["features.0.weight", "features.3.weight", "classifier.weight"]
    levels = {"features.3.*": 0.7, "features.*": 0.2}
    assert resolve_levels(names_, 0.5, levels) == {
        "features.0.weight": 0.2,
        "features.3.weight": 0.7,
        "classifier.weight": 0.5,
    }
    assert resolve_levels(["module.classifier.weight"], 0.5, {"classifier.*": 0.1}) == {"module.classifier.weight": 0.1}


def test_levels_errors():
    with pytest.raises(
        PruningError, match="pruner.levels pattern 'clasifier.weight' matches none.*closest names: classifier.weight"
    ):
        resolve_levels(["classifier.weight"], 0.5, {"clasifier.weight": 0.3})
    with pytest.raises(
        PruningError, match="pruner.levels pattern 'fc.*' matches none.*names look like: classifier.weight"
    ):
        resolve_levels(["classifier.weight"], 0.5, {"fc.*": 0.3})
    with pytest.raises(PruningError, match=r"pruner.levels\['classifier.\*'\]=1.5 is outside \[0, 1\)"):
        resolve_levels(["classifier.weight"], 0.5, {"classifier.*": 1.5})


def test_integer_parameters_are_rejected():
    model = Small()
    model.register_parameter("counter", nn.Parameter(torch.zeros(3, dtype=torch.int64), requires_grad=False))
    with pytest.raises(PruningError, match="not floating point"):
        select_parameters(model, "fine", weights=["counter"])


def test_io_layer_weights_are_first_and_last_layer_weights():
    from framework.pruning.selection import io_layer_weights

    assert io_layer_weights(Small()) == ("features.0.weight", "classifier.weight")
    assert io_layer_weights(nn.DataParallel(Small())) == ("module.features.0.weight", "module.classifier.weight")
    assert io_layer_weights(nn.Sequential(nn.BatchNorm1d(3))) == (None, None)
