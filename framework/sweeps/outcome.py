"""How the process should exit, decided by the runs and sweeps it made (run.py asks at the end).

A single run that fails on a user mistake exits 2 (one line printed); a multirun with any failed
job exits 1, whatever launcher ran the jobs, after one line per failed job.
"""

from __future__ import annotations

from typing import List

user_errors: List[str] = []  # single runs that stopped on a SecateursError
failed_jobs: List[str] = []  # "job N (...) failed: ..." lines of finished multiruns


def exit_code() -> int:
    if failed_jobs:
        return 1
    return 2 if user_errors else 0
