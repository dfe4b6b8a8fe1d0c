"""How a multirun should exit (run.py asks at the end): 1 when any job failed, whatever launcher
ran the jobs, after one line per failed job. (A single run's user mistake exits 2: run.py's own.)
"""

from __future__ import annotations

failed_jobs: list[str] = []  # "job N (...) failed: ..." lines of finished multiruns


def exit_code() -> int:
    return 1 if failed_jobs else 0
