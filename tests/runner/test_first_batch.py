"""The first batch of each split and the model's output are checked before training: one line
each, exit 2 (issue 21 item 5)."""

from __future__ import annotations

import textwrap

import pytest
import torch
from cli_in_process import run_main
from support import cli_dirs
from torch import nn
from torch.utils.data import TensorDataset

from framework.data.bundle import DatasetBundle
from framework.errors import ConfigError
from framework.runner.first_batch import check_first_batches, check_output

SHAPE = (1, 4, 4)


class Net(nn.Module):
    def __init__(self, outputs=3, as_tuple=False, batch=None):
        super().__init__()
        self.linear = nn.Linear(16, outputs)
        self.as_tuple, self.batch = as_tuple, batch

    def forward(self, x):
        y = self.linear(x.reshape(self.batch or x.shape[0], -1)[:, :16])
        return (y, y) if self.as_tuple else y


def dataset(count=8, labels=None, shape=SHAPE):
    labels = torch.arange(count) % 3 if labels is None else labels
    return TensorDataset(torch.randn(count, *shape), labels)


class Pairs(torch.utils.data.Dataset):
    def __init__(self, sample):
        self.sample = sample

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return self.sample


DATA = {
    "label 3 of 3 classes": (
        dataset(labels=torch.tensor([0, 1, 2, 3, 0, 1, 2, 0])),
        r"first train batch has label 3; allowed: 0 to 2 \(num_classes=3\)",
    ),
    "negative label": (dataset(labels=torch.tensor([0, -1, 2, 1, 0, 1, 2, 0])), r"label -1; allowed: 0 to 2"),
    "float labels": (
        dataset(labels=torch.zeros(8)),
        r"labels of dtype torch.float32 and shape \[4\]; allowed: one integer class index",
    ),
    "one-hot labels": (
        dataset(labels=torch.zeros(8, 3, dtype=torch.long)),
        r"shape \[4, 3\]; allowed: one integer class index",
    ),
    "another shape": (
        dataset(shape=(1, 5, 5)),
        r"samples of shape \(1, 5, 5\) but the dataset declares input_shape=\(1, 4, 4\)",
    ),
    "not a pair": (
        Pairs(torch.zeros(SHAPE)),
        r"train sample 0 is a Tensor; allowed: an \(input tensor, integer label\) pair",
    ),
    "a triple": (Pairs((torch.zeros(SHAPE), 0, 1)), r"train sample 0 is a tuple of 3; allowed"),
    "string label": (Pairs((torch.zeros(SHAPE), "cat")), r"has a label of type str; allowed: an integer"),
    "a list, not a dataset": (5, r"load\(\) gave a int as the train split; allowed: a torch Dataset"),
    "empty train": (dataset(count=0), r"the train split is empty"),
}


def check(train, val=None, model=None):
    bundle = DatasetBundle(train, dataset() if val is None else val, 3, SHAPE)
    check_first_batches(
        bundle, model or Net(), torch.device("cpu"), 4, 3, SHAPE, "my_data.Data", "model._target_=my.Net"
    )


@pytest.mark.parametrize("case", DATA)
def test_a_bad_first_training_batch_is_one_line(case):
    train, expected = DATA[case]
    with pytest.raises(ConfigError, match=expected) as raised:
        check(train)
    assert "\n" not in str(raised.value) and "my_data.Data" in str(raised.value)


def test_an_empty_validation_split_is_one_line():
    with pytest.raises(ConfigError, match=r"dataset._target_=my_data.Data: the val split is empty"):
        check(dataset(), val=dataset(count=0))


def test_a_bad_validation_label_is_one_line():
    with pytest.raises(ConfigError, match=r"the first val batch has label 7"):
        check(dataset(), val=dataset(labels=torch.full((8,), 7)))


@pytest.mark.parametrize(
    "model, expected",
    [
        (Net(outputs=10), r"returned shape \[4, 10\] for a batch of 4; expected \[4, 3\]"),
        (Net(as_tuple=True), r"returned a tuple; allowed: one tensor of logits"),
        (Net(batch=2), r"returned shape \[2, 3\] for a batch of 4; expected \[4, 3\].*fixes the batch size"),
        # a batch size the reshape cannot take: the forward raises (issue 29 item 8)
        (
            Net(batch=3),
            r"raised RuntimeError on the first training batch of shape \[4, 1, 4, 4\]: shape '\[3, -1\]' is "
            r"invalid .*; its forward must take any batch size",
        ),
    ],
)
def test_a_model_output_that_is_not_batch_by_classes_is_one_line(model, expected):
    with pytest.raises(ConfigError, match=expected) as raised:
        check(dataset(), model=model)
    assert "\n" not in str(raised.value)


class Augmented(torch.utils.data.Dataset):
    """Draws from the global RNG for every sample, as random crops do."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.rand(SHAPE), index % 3


def test_a_good_batch_passes_and_leaves_the_random_stream_untouched():
    bundle = DatasetBundle(Augmented(), Augmented(), 3, SHAPE)
    model = Net()
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    check_first_batches(bundle, model, torch.device("cpu"), 4, 3, SHAPE, "my_data.Data", "model")
    assert torch.equal(torch.rand(3), expected)
    assert model.training


def test_check_output_names_a_hard_coded_batch():
    with pytest.raises(ConfigError, match="fixes the batch size"):
        check_output(torch.zeros(64, 3), 2, 3, "model")


BAD_DATA = """
import torch
from torch.utils.data import TensorDataset


class Labels:
    num_classes = 3
    input_shape = (1, 4, 4)

    def __init__(self, label: int = 7, val_size: int = 8):
        self.label, self.val_size = label, val_size

    def load(self):
        train = TensorDataset(torch.randn(8, 1, 4, 4), torch.full((8,), self.label))
        val = TensorDataset(torch.randn(self.val_size, 1, 4, 4), torch.zeros(self.val_size, dtype=torch.long))
        return train, val
"""

THREE_OUT = """
from torch import nn


class Three(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float = 1.0):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))

    def forward(self, x):
        return self.net(x)
"""


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["dataset=labels"], "dataset._target_=bad_data.Labels: the first train batch has label 7; allowed: 0 to 2"),
        (
            ["dataset=labels", "dataset.label=0", "dataset.val_size=0"],
            "dataset._target_=bad_data.Labels: the val split is empty",
        ),
        (
            ["model._target_=three.Three"],
            "model._target_=three.Three returned shape [2, 3] for a batch of 2; expected [2, 10]",
        ),
    ],
)
def test_bad_data_or_model_output_through_the_cli_exits_2_before_training(tmp_path, overrides, expected):
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "bad_data.py").write_text(textwrap.dedent(BAD_DATA))
    (tmp_path / "three.py").write_text(textwrap.dedent(THREE_OUT))
    (tmp_path / "conf" / "dataset" / "labels.yaml").write_text(
        "# @package _global_\ndataset:\n  _target_: bad_data.Labels\n  label: 7\n  val_size: 8\nloader:\n  batch_size: 4\n  num_workers: 0\n"
    )
    result = run_main(
        ["--config-dir", str(tmp_path / "conf"), *overrides, "tracking=none", *cli_dirs(tmp_path, mlflow=False)],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
