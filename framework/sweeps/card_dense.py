"""The dense model a card's runs start from: one per seed, trained once per sweep.

Every run of a seed (each criterion, scope and ratio) prunes the same trained weights, so a
difference between methods is the method's, not the dense model's. It is trained by the first job
that needs it, under a file lock in the sweep folder: jobs of other processes (joblib) or machines
(a shared folder under SLURM) wait for it rather than train it again, with every launcher; a later
job, or the same sweep continued, finds the file. A training that was cut off continues from its
last checkpoint (the trainer is called with its folder; it resumes there).

Per seed rather than once for all: the spread over seeds then includes the dense model's own
training noise, which is part of what a reader must know when comparing methods.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

DENSE_DIR = "dense"  # <sweep dir>/dense/seed_<s>/
TARGETS_FILE = "targets.json"  # <sweep dir>/dense/targets.json: each ratio's solved sparsity
DENSE_FILE = "dense.pt"  # the trained weights (a state_dict, weights_only)
LOCK_TIMEOUT_S = 48 * 3600  # a dense training may take hours; a dead holder's lock is released by the OS


def dense_folder(sweep_dir: str | Path, seed: int) -> Path:
    return Path(sweep_dir) / DENSE_DIR / f"seed_{seed}"


def shared_dense_model(sweep_dir: str | Path, seed: int, train: Callable[[Path], None]) -> Path:
    """``<sweep dir>/dense/seed_<seed>/dense.pt``, calling ``train(folder)`` first when no job has
    made it yet; ``train`` writes ``folder/dense.pt`` (atomically) or raises."""
    from filelock import FileLock

    folder = dense_folder(sweep_dir, seed)
    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / DENSE_FILE
    with FileLock(str(folder.parent / f"seed_{seed}.lock"), timeout=LOCK_TIMEOUT_S):
        if not model_file.is_file():
            train(folder)
            if not model_file.is_file():
                raise RuntimeError(f"the dense training of seed {seed} ended without writing {model_file}")
    return model_file


def shared_target(sweep_dir: str | Path, key: str, solve: Callable[[], float]) -> float:
    """The pruner target solved for ``key`` (model, structure, ratio) in this sweep: solved by the
    first job that asks, read by the others (the same bisection gives the same answer; once is enough)."""
    import json
    import os

    from filelock import FileLock

    folder = Path(sweep_dir) / DENSE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TARGETS_FILE
    with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
        try:
            known = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:  # a damaged file: solved again and rewritten
            known = {}
        value = known.get(key)
        if not isinstance(value, float):
            value = known[key] = float(solve())
            partial = path.with_name(f"{TARGETS_FILE}.tmp{os.getpid()}")
            partial.write_text(json.dumps(known, indent=1, sort_keys=True))
            os.replace(partial, path)
    return value
