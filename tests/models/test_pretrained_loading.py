"""load_pretrained / check_pretrained_file: formats and errors (``pretrained=<path>`` in a run)."""

import collections

import pytest
import torch

from framework.errors import CheckpointError
from framework.models import CifarResNet, SimpleCNN, check_pretrained_file, load_pretrained


def fresh(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return SimpleCNN(num_classes, in_channels=1, width=0.25)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def source():
    """A model whose weights differ from a freshly built one (other seed, trained BN stats)."""
    model = fresh(seed=123)
    model.train()
    model(torch.randn(4, 1, 8, 8))  # moves BatchNorm running statistics off their defaults
    return model


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda s: s, id="plain-state-dict"),
        pytest.param(lambda s: {"model": s, "epoch": 3, "optimizer": {}}, id="checkpoint-dict"),
        pytest.param(
            lambda s: collections.OrderedDict(("module." + k, v) for k, v in s.items()),
            id="module-prefix",
        ),
        pytest.param(lambda s: {"model": {"module." + k: v for k, v in s.items()}}, id="checkpoint-module"),
    ],
)
def test_round_trip(tmp_path, source, wrap):
    path = tmp_path / "weights.pt"
    torch.save(wrap(source.state_dict()), path)
    target = fresh()
    assert not torch.equal(target.block1[0].weight, source.block1[0].weight)
    check_pretrained_file(path)
    assert load_pretrained(target, path) is target
    assert_same_weights(target, source)


def checkpoint_error(call) -> str:
    with pytest.raises(CheckpointError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert "pretrained=" in message and "model.pretrained" not in message
    return message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    for call in (lambda: check_pretrained_file(path), lambda: load_pretrained(fresh(), path)):
        message = checkpoint_error(call)
        assert "not found" in message and str(path) in message


def test_directory_is_refused(tmp_path):
    assert "not a file" in checkpoint_error(lambda: check_pretrained_file(tmp_path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    assert "empty" in checkpoint_error(lambda: check_pretrained_file(path))


def test_foreign_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    message = checkpoint_error(lambda: load_pretrained(fresh(), path))
    assert "not a file written by torch.save" in message


def test_truncated_file_is_caught_by_the_cheap_check(tmp_path, source):
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in checkpoint_error(lambda: check_pretrained_file(path))
    assert "truncated" in checkpoint_error(lambda: load_pretrained(fresh(), path))


def test_damaged_archive_is_one_line(tmp_path, source):
    # Intact zip directory, damaged pickle inside: the cheap check passes, torch.load does not.
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    data = path.read_bytes()
    assert data.count(b"OrderedDict") == 1
    path.write_bytes(data.replace(b"OrderedDict", b"OrderedDicX"))
    check_pretrained_file(path)
    message = checkpoint_error(lambda: load_pretrained(fresh(), path))
    assert "cannot be loaded" in message and "OrderedDicX" in message


class Arbitrary:
    """A class weights_only loading does not allow: unpickling it could run code."""


def test_pickled_objects_are_refused_not_run(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": Arbitrary()}, path)
    message = checkpoint_error(lambda: load_pretrained(fresh(), path))
    assert "cannot be loaded" in message and "UnpicklingError" in message
    assert "Arbitrary" in message  # the refused class is named, not PyTorch's general advice


def test_file_without_weights(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    message = checkpoint_error(lambda: load_pretrained(fresh(), path))
    assert "not weights" in message and "[epoch, lr]" in message


def test_keys_that_do_not_fit_are_named(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(CifarResNet(20, num_classes=10, in_channels=1).state_dict(), path)
    message = checkpoint_error(lambda: load_pretrained(fresh(), path))
    assert "missing keys [block1.0.weight" in message
    assert "unexpected keys [conv1.weight" in message
    assert "more)" in message  # long lists are summarised, not dumped


def test_shape_mismatch_is_named(tmp_path, source):
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    message = checkpoint_error(lambda: load_pretrained(fresh(num_classes=5), path))
    assert "shape mismatch" in message
    assert "classifier.weight (10, 32) vs model (5, 32)" in message
