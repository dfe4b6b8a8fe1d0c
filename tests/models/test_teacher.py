"""Loading a distillation teacher: our checkpoint and thinned files, one-line refusals."""

from __future__ import annotations

import os

import pytest
import torch

from framework.errors import CheckpointError
from framework.models.simple_cnn import SimpleCNN
from framework.models.teacher import check_teacher_file, check_teacher_outputs, load_teacher


def test_a_checkpoint_of_ours_loads_weights_only(tmp_path):
    source = SimpleCNN(in_channels=1, width=0.25)
    path = tmp_path / "last.pt"
    torch.save({"model": source.state_dict(), "epoch": 3}, path)
    check_teacher_file(path)
    teacher = load_teacher(SimpleCNN(in_channels=1, width=0.25), path)
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), source.state_dict().values()))


def test_missing_foreign_and_mismatched_files_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match=r"^distill.teacher file not found: distill.teacher=.*nothere.pt"):
        check_teacher_file(tmp_path / "nothere.pt")
    foreign = tmp_path / "notes.txt"
    foreign.write_text("hello")
    with pytest.raises(CheckpointError, match=r"^distill.teacher file is not a file written by torch.save"):
        check_teacher_file(foreign)
    other = tmp_path / "other.pt"
    torch.save(SimpleCNN(in_channels=1, width=0.5).state_dict(), other)
    refusal = r"^distill.teacher file does not fit the model: distill.teacher="
    with pytest.raises(CheckpointError, match=refusal) as error:
        load_teacher(SimpleCNN(in_channels=1, width=0.25), other)
    assert "\n" not in str(error.value)


def test_a_teacher_with_other_classes_is_refused(tmp_path):
    teacher, student = SimpleCNN(num_classes=5, in_channels=1), SimpleCNN(num_classes=10, in_channels=1)
    with pytest.raises(CheckpointError, match=r"distill.teacher=t.pt gives 5 outputs but the model gives 10"):
        check_teacher_outputs(teacher, student, torch.zeros(2, 1, 8, 8), "t.pt")


def test_a_teacher_with_nan_weights_is_refused_at_load(tmp_path):
    """Not accepted, to stop the run at its first step blaming the learning rate (issue 29 item 9)."""
    source = SimpleCNN(in_channels=1, width=0.25)
    state = source.state_dict()
    next(value for value in state.values() if value.is_floating_point()).view(-1)[0] = float("nan")
    torch.save({"model": state}, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=r"^distill.teacher=.*best.pt holds NaN or infinite weights \(") as error:
        load_teacher(SimpleCNN(in_channels=1, width=0.25), tmp_path / "best.pt")
    assert "\n" not in str(error.value)


def test_a_run_folder_as_teacher_names_its_files(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    torch.save(SimpleCNN(in_channels=1).state_dict(), tmp_path / "checkpoints" / "best.pt")
    with pytest.raises(CheckpointError) as error:
        check_teacher_file(tmp_path)
    assert str(error.value) == (
        f"distill.teacher path is a folder, not a file: distill.teacher={tmp_path}; give one of its files "
        f"({tmp_path / 'checkpoints' / 'best.pt'})"
    )


def test_a_pickle_payload_as_teacher_names_the_refused_class(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo ran",))

    torch.save({"model": SimpleCNN(in_channels=1).state_dict(), "extra": Payload()}, tmp_path / "best.pt")
    with pytest.raises(CheckpointError) as error:
        load_teacher(SimpleCNN(in_channels=1), tmp_path / "best.pt")
    message = str(error.value)
    assert "GLOBAL posix.system" in message and "In PyTorch 2.6" not in message and "\n" not in message
