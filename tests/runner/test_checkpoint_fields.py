"""Every field a resume reads from a checkpoint is checked: one line naming the file and the field,
exit 2, never a traceback or a silently different run (issue 21 item 4)."""

from __future__ import annotations

import copy

import pytest
import torch
from cli_in_process import run_main
from support import cli_dirs

from framework.errors import CheckpointError
from framework.models.simple_cnn import SimpleCNN
from framework.training.checkpoint_checks import check_checkpoint_fields, check_checkpoint_fits

BASE = ["tracking=none", "epochs=2"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A real run's checkpoint after 1 of 2 epochs (epochs=1 would finish the run)."""
    tmp_path = tmp_path_factory.mktemp("finished")
    result = run_main([*BASE, "epochs=1", *cli_dirs(tmp_path, mlflow=False)])
    assert result.returncode == 0, result.stderr[-2000:]
    return torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)


def edited(checkpoint, edit):
    checkpoint = copy.deepcopy(checkpoint)
    edit(checkpoint)
    return checkpoint


FIELD_CASES = {
    "epoch 99": (
        lambda c: c.update(epoch=99),
        r"epoch=99; expected a whole number of finished epochs from 0 to epochs=1",
    ),
    "epoch -5": (lambda c: c.update(epoch=-5), r"epoch=-5; expected"),
    "epoch 'two'": (lambda c: c.update(epoch="two"), r"epoch='two'; expected"),
    "epoch without history": (lambda c: c.update(epoch=0), r"epoch=0 but its history holds 1 epochs"),
    "history of strings": (
        lambda c: c.update(history=["val/top1"]),
        r"history is not a list of metric -> number mappings",
    ),
    "history metric a string": (lambda c: c["history"][0].update({"val/top1": "high"}), r"history is not a list"),
    "global_step": (lambda c: c.update(global_step=-1), r"global_step=-1; expected a whole number >= 0"),
    "rng torch": (lambda c: c["rng"].update(torch=torch.zeros(3)), r"its RNG state \(rng\) cannot be restored"),
    "rng python": (lambda c: c["rng"].update(python=[3]), r"its RNG state \(rng\) cannot be restored"),
    "rng a list": (lambda c: c.update(rng=[1, 2]), r"its RNG state \(rng\) cannot be restored"),
    "hooks a list": (lambda c: c.update(hooks=[]), r"hooks is not a mapping of hook name -> state mapping"),
    "recorded config": (
        lambda c: c["hooks"]["config"].update(params=["epochs"]),
        r"the recorded config \(hooks.config.params\)",
    ),
}


@pytest.mark.parametrize("case", FIELD_CASES)
def test_a_tampered_field_is_one_line(finished, case, tmp_path):
    edit, expected = FIELD_CASES[case]
    with pytest.raises(CheckpointError, match=expected) as raised:
        check_checkpoint_fields(edited(finished, edit), tmp_path / "last.pt", epochs=1)
    assert "\n" not in str(raised.value) and "last.pt" in str(raised.value)


def model_and_optimizer():
    model = SimpleCNN(num_classes=10, in_channels=1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def first_key(c):
    return next(iter(c["model"]))


FIT_CASES = {
    "weights of another shape": (
        lambda c: c["model"].update({"classifier.weight": torch.zeros(3, 3)}),
        r"its weights do not fit SimpleCNN: shape mismatch in \[classifier.weight \(3, 3\) vs model",
    ),
    "a weight missing": (lambda c: c["model"].pop("classifier.bias"), r"missing keys \[classifier.bias\]"),
    "a weight renamed": (
        lambda c: c["model"].update({"head.weight": c["model"].pop("classifier.weight")}),
        r"missing keys \[classifier.weight\]; unexpected keys \[head.weight\]",
    ),
    "model a list": (lambda c: c.update(model=[1]), r"model is not a state_dict"),
    "optimizer groups": (
        lambda c: c["optimizer"]["param_groups"].append(c["optimizer"]["param_groups"][0]),
        r"optimizer has 2 parameter groups; SGD has 1",
    ),
    "optimizer state shape": (
        lambda c: c["optimizer"]["state"][0].update(momentum_buffer=torch.zeros(2)),
        r"optimizer state 'momentum_buffer' of parameter 0 has shape \(2,\)",
    ),
    "optimizer state a string": (
        lambda c: c["optimizer"]["state"][0].update(momentum_buffer="x"),
        r"optimizer state 'momentum_buffer' of parameter 0 is a str",
    ),
    "optimizer a list": (lambda c: c.update(optimizer=[]), r"optimizer is not an optimizer state_dict"),
}


@pytest.mark.parametrize("case", FIT_CASES)
def test_a_checkpoint_that_does_not_fit_is_one_line(finished, case, tmp_path):
    edit, expected = FIT_CASES[case]
    model, optimizer = model_and_optimizer()
    with pytest.raises(CheckpointError, match=expected) as raised:
        check_checkpoint_fits(edited(finished, edit), tmp_path / "last.pt", model, optimizer)
    assert "\n" not in str(raised.value)


def test_the_untouched_checkpoint_passes_both_checks(finished, tmp_path):
    check_checkpoint_fields(finished, tmp_path / "last.pt", epochs=2)
    model, optimizer = model_and_optimizer()
    check_checkpoint_fits(finished, tmp_path / "last.pt", model, optimizer)


@pytest.mark.parametrize("case", ["epoch 'two'", "weights of another shape"])
def test_resuming_a_tampered_checkpoint_exits_2_with_one_line_and_keeps_it(finished, tmp_path, case):
    edit, expected = {**FIELD_CASES, **FIT_CASES}[case]
    path = tmp_path / "tampered.pt"
    torch.save(edited(finished, edit), path)
    before = path.read_bytes()
    result = run_main([*BASE, f"resume={path}", "resume_changed=allow", *cli_dirs(tmp_path, mlflow=False)])
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "tampered.pt" in errors[0]
    assert path.read_bytes() == before  # the user's file is left as it was
