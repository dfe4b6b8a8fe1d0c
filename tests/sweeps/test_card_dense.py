"""The dense model of a seed is trained once, whichever process asks first; the others wait."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from framework.sweeps.card_dense import DENSE_FILE, dense_folder, shared_dense_model


def slow_training(folder: Path) -> None:
    (folder / "trained_by").open("a").write(f"{multiprocessing.current_process().pid}\n")
    time.sleep(0.5)  # long enough for the other processes to be waiting on the lock
    partial = folder / "dense.pt.tmp"
    partial.write_bytes(b"weights")
    partial.replace(folder / DENSE_FILE)


def ask(sweep_dir: str, seed: int) -> str:
    return str(shared_dense_model(sweep_dir, seed, slow_training))


def test_parallel_jobs_train_a_seed_once_and_share_it(tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        paths = pool.starmap(ask, [(str(tmp_path), 0)] * 3 + [(str(tmp_path), 1)])
    assert len(set(paths[:3])) == 1 and paths[3] != paths[0]
    for seed in (0, 1):
        assert len((dense_folder(tmp_path, seed) / "trained_by").read_text().split()) == 1  # trained once
    assert ask(str(tmp_path), 0) == paths[0]  # a later job (or a continued sweep) finds it


def test_a_training_that_writes_nothing_is_an_error_and_the_next_job_trains_again(tmp_path):
    with pytest.raises(RuntimeError, match="ended without writing"):
        shared_dense_model(tmp_path, 0, lambda folder: None)
    assert Path(shared_dense_model(tmp_path, 0, slow_training)).read_bytes() == b"weights"
