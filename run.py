"""Entry point: ``python run.py [group=option ...] [key=value ...]`` (``-m`` for a sweep)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# The schema and the checks import neither torch nor mlflow: --help and typos answer at once.
import framework.config  # noqa: F401  (registers the schema and the project_root resolver)
from framework.sweeps import outcome

_jobs_started = 0


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    """One run, or one job of a multirun; returns the final ``optimized_metric`` for sweepers."""
    global _jobs_started
    _jobs_started += 1
    from framework.sweeps.task import run_task

    return run_task(cfg)


def make_user_code_importable(argv: list[str]) -> None:
    """Components of yours named by ``_target_`` (``my_net.MyNet``) are imported from the current
    directory or from the folder that holds the ``--config-dir`` you give, as a user expects."""
    from framework.cli_help import config_dirs

    for folder in [Path.cwd(), *(d.resolve().parent for d in config_dirs(Path("conf"), argv)[1:])]:
        if str(folder) not in sys.path:
            sys.path.insert(1, str(folder))


if __name__ == "__main__":
    make_user_code_importable(sys.argv[1:])
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        from framework.cli_help import print_help

        print_help(Path(__file__).resolve().parent / "conf", sys.argv[1:])
        sys.exit(0)
    from framework.sweeps.callback import finish_open_sweeps

    try:
        main()
    except KeyboardInterrupt as interrupt:
        # The last checkpoint is kept; the MLflow run is already marked KILLED.
        finish_open_sweeps()
        print("interrupted: the run is marked KILLED; continue it with resume=auto", file=sys.stderr)
        sys.exit(143 if type(interrupt).__name__ == "Terminated" else 130)
    except SystemExit as hydra_exit:
        # A sweeper that raised (Optuna with no finished trial) skipped the sweep's end: do it here.
        finish_open_sweeps()
        # Hydra exits 1 for a config it cannot compose (unknown key or option, wrong type): that
        # is bad input like ours, so it gets our exit code. Once a job has started, 1 means a crash.
        if hydra_exit.code == 1 and _jobs_started == 0:
            sys.exit(2)
        raise
    sys.exit(outcome.exit_code())
