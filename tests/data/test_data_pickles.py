"""Dataset pickles (CIFAR-10's batch files) are read without running code from them."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from test_file_datasets import CIFAR_PER_BATCH, write_cifar10

from framework.data import CIFAR10
from framework.data.safe_pickle import load_data_pickle
from framework.errors import DataError


class MarkerPayload:
    """Unpickled by ``pickle.load``, this runs ``touch <marker>`` (a real code-execution payload)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def tampered_batch(marker) -> bytes:
    entry = {
        "batch_label": "training batch 2 of 5",
        "labels": [0, 1, 2],
        "data": np.zeros((3, 3072), dtype=np.uint8),
        "filenames": MarkerPayload(marker),
    }
    return pickle.dumps(entry, protocol=2)


def test_the_payload_is_real_when_unpickled_plainly(tmp_path):
    # Guards the next test: the same bytes do run code through pickle.load.
    marker = tmp_path / "ran"
    pickle.loads(tampered_batch(marker))
    assert marker.exists()


def test_a_tampered_cifar_batch_runs_no_code_and_names_the_file(tmp_path):
    folder = write_cifar10(tmp_path / "data")
    marker = tmp_path / "ran"
    (folder / "data_batch_2").write_bytes(tampered_batch(marker))
    with pytest.raises(DataError) as info:
        CIFAR10(root=tmp_path / "data").load()
    message = str(info.value)
    assert not marker.exists()
    assert "\n" not in message
    assert str(folder / "data_batch_2") in message and "posix.system" in message


def test_a_tampered_meta_file_runs_no_code(tmp_path):
    folder = write_cifar10(tmp_path / "data")
    marker = tmp_path / "ran"
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": MarkerPayload(marker)}, protocol=2))
    with pytest.raises(DataError) as info:
        CIFAR10(root=tmp_path / "data").load()
    assert not marker.exists()
    assert "batches.meta" in str(info.value)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_and_arrays_load_in_every_protocol(tmp_path, protocol):
    entry = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3], "name": b"x", "f": 1.5}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(entry, protocol=protocol))
    loaded = load_data_pickle(path, "test")
    assert np.array_equal(loaded["data"], entry["data"]) and loaded["data"].dtype == np.uint8
    assert loaded["labels"] == [1, 2, 3] and loaded["name"] == b"x" and loaded["f"] == 1.5


def test_a_batch_of_the_wrong_shape_is_one_line(tmp_path):
    folder = write_cifar10(tmp_path)
    entry = {"labels": [0], "data": np.zeros((1, 10), dtype=np.uint8)}
    (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DataError) as info:
        CIFAR10(root=tmp_path).load()
    assert "test_batch" in str(info.value) and "(N, 3072)" in str(info.value)


def test_a_valid_cifar_folder_still_loads(tmp_path):
    write_cifar10(tmp_path)
    bundle = CIFAR10(root=tmp_path, augment=False).load()
    assert len(bundle.train) == 5 * CIFAR_PER_BATCH
    assert bundle.train.classes[0] == "airplane"
    assert bundle.train.targets == list(range(CIFAR_PER_BATCH)) * 5
