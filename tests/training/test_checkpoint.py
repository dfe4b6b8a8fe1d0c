"""Checkpoints are atomic and load safely with one-line errors."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from framework.errors import CheckpointError, StorageError
from framework.training import load_checkpoint, load_safely, save_atomic


def test_save_atomic_round_trip_loads_with_weights_only(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_atomic({"model": {"w": torch.ones(2)}, "optimizer": {}, "epoch": 3}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind


def test_a_crash_during_the_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"model": {}, "optimizer": {}, "epoch": 1}, path)

    class Exploding:
        def __reduce__(self):
            raise OSError("disk full")

    with pytest.raises(StorageError, match="disk full"):
        save_atomic({"model": {}, "optimizer": {}, "epoch": 2, "bad": Exploding()}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_truncated_file_gives_one_line(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"model": {"w": torch.randn(1000)}, "optimizer": {}, "epoch": 1}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "truncated or not a PyTorch file" in str(error.value)
    assert "\n" not in str(error.value)


def test_foreign_pickle_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(path, "wb") as handle:
        pickle.dump(Payload(), handle)
    with pytest.raises(CheckpointError) as error:
        load_safely(path)
    assert "\n" not in str(error.value)


def test_missing_and_non_checkpoint_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    path = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="is not a secateurs checkpoint"):
        load_checkpoint(path)


def test_a_signal_during_the_write_waits_until_the_checkpoint_is_complete(tmp_path):
    import collections
    import signal

    class SignalsWhilePickled:
        """Sends SIGTERM to this process while torch.save pickles it (mid-write, every time)."""

        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            return (collections.OrderedDict, ())  # rebuilds as an empty mapping weights_only allows

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(Stopped):
            save_atomic(
                {"model": {"w": torch.ones(9)}, "optimizer": {}, "epoch": 3, "late": SignalsWhilePickled()},
                tmp_path / "last.pt",
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    # the handler ran after the file was complete: it is in place, whole, and no temporary is left
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3
