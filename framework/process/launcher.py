"""What the launcher (torchrun, or srun for a SLURM job's tasks) says about this process, read
from its environment; torch-free, so the command's entry can ask before importing anything."""

from __future__ import annotations

import os
from collections.abc import Mapping

# torchrun's names, and SLURM's for tasks that srun started (a submitit job with several tasks),
# which are read when torchrun's are absent.
_ENV_NAMES = {"WORLD_SIZE": "SLURM_NTASKS", "RANK": "SLURM_PROCID", "LOCAL_RANK": "SLURM_LOCALID"}


def _launcher_value(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    text = environ.get(name)
    if text is None and "WORLD_SIZE" not in environ and "MASTER_ADDR" in environ:
        text = environ.get(_ENV_NAMES[name])  # SLURM tasks; MASTER_ADDR says they form a group
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def launched_world_size(environ: Mapping[str, str] | None = None) -> int:
    """How many processes the launcher started (1 when not started by torchrun or srun)."""
    return _launcher_value("WORLD_SIZE", 1, environ)


def launched_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank as the launcher says (0 when not started by torchrun or srun)."""
    return _launcher_value("RANK", 0, environ)


def launched_local_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank on its machine (0 when not started by torchrun or srun)."""
    return _launcher_value("LOCAL_RANK", 0, environ)
