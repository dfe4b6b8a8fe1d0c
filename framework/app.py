"""The ``secateurs`` command (``python run.py`` in a clone is the same): ``secateurs [group=option ...]
[key=value ...]`` for one run, ``-m`` for a sweep.

The configs are the repository's top-level ``conf/`` in a clone and ``framework/conf/`` in an
installed wheel (:func:`framework.config.conf_dir`); both compose the same tree. This module is the
process's entry: the only one beside the tests that imports the runner.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# The schema and the checks import neither torch nor mlflow: --help and typos answer at once.
from framework.config import conf_dir
from framework.process.exit import EXIT_BAD_INPUT, EXIT_OK, exit_with, interrupted_exit_code
from framework.run_context import RunContext

_jobs_started = 0
_user_errors: list[str] = []  # single runs that stopped on a user mistake (SecateursError): exit 2
_quiet_stderr = None  # under torchrun, where a rank > 0 sends Hydra's compose errors (rank 0 shows them)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def hydra_main(cfg: DictConfig):
    """One run, or one job of a multirun (then returns the final ``optimized_metric`` for sweepers)."""
    global _jobs_started
    _jobs_started += 1
    if _quiet_stderr is not None and sys.stderr is _quiet_stderr:
        sys.stderr = sys.__stderr__  # a rank > 0 stays quiet only until its job starts (see below)
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    context = dict(
        run_dir=run_dir,
        overrides=list(hydra_cfg.overrides.task),
        hydra_dir=run_dir / hydra_cfg.output_subdir if hydra_cfg.output_subdir else None,
    )
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return run_job(cfg, hydra_cfg, context)
    return run_single(cfg, context)


def run_single(cfg: DictConfig, context: dict):
    """A single run: a user mistake prints one line and the process exits 2 (under torchrun only
    rank 0 says it; every rank exits 2); the last epoch's metrics otherwise."""
    from framework.errors import SecateursError
    from framework.runner import run

    try:
        return run(cfg, RunContext(**context))
    except SecateursError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        for line in str(error).splitlines() if _rank() == 0 else ():
            print(f"error: {line}", file=sys.stderr, flush=True)
        _user_errors.append(str(error))
        return None


def run_job(cfg: DictConfig, hydra_cfg, context: dict):
    """A job of a multirun: the runner runs it, the sweep layer records its outcome (job.json) and
    gives the sweeper its value, a number or a failed trial, never an exception."""
    from framework.runner import run
    from framework.sweeps.job import SweepJob

    job = SweepJob(hydra_cfg)
    try:
        final = run(
            cfg, RunContext(**context, job_num=job.num, swept_keys=job.swept_keys, parent_run_id=job.parent_run_id)
        )
        return job.finished(final, cfg.optimized_metric)
    except Exception as error:
        return job.failed(error)
    finally:
        job.write_record()


def _rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def quiet_other_ranks(argv: list[str]) -> list[str]:
    """Under torchrun, ranks > 0 compose the same config but leave the run dir to rank 0: no
    ``.hydra/`` copy, no log file (rank 0 writes both), and a compose error is shown once."""
    if _rank() == 0 or int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return argv
    import io

    global _quiet_stderr
    sys.stderr = _quiet_stderr = io.StringIO()  # Hydra's own compose errors: rank 0 prints the same text
    return [*argv, "hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


def make_user_code_importable(argv: list[str]) -> None:
    """Components of yours named by ``_target_`` (``my_net.MyNet``) are imported from the current
    directory or from the folder that holds the ``--config-dir`` you give, as a user expects.

    Those folders go to the *end* of ``sys.path``: a module of yours never shadows an installed
    package or the standard library (a ``sklearn.py`` beside your data stays a file of yours). The
    folder of the script (run.py's clone), which Python puts first, goes to the end too once
    ``framework`` is imported (its submodules are found through the package, not ``sys.path``). A
    run folder (one the program wrote: it holds ``.hydra/`` or ``.lock``) never becomes importable,
    even when its ``conf/`` is passed as ``--config-dir`` (the derived-pruner command does)."""
    from framework.cli_help import config_dirs

    script_dir = Path(sys.argv[0]).resolve().parent
    if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == script_dir and "framework" in sys.modules:
        sys.path.append(sys.path.pop(0))
    folders = [Path.cwd(), *(d.resolve().parent for d in config_dirs(conf_dir(), argv)[1:])]
    for folder in folders:
        if is_run_folder(folder) or str(folder) in sys.path:
            continue
        sys.path.append(str(folder))


def output_dir_problem(argv: list[str]) -> str | None:
    """A ``hydra.run.dir`` / ``hydra.sweep.dir`` given on the command line that cannot be created
    (a file on its path, a folder without write access): one line now, not Hydra's traceback."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") not in ("hydra.run.dir", "hydra.sweep.dir") or not value or "${" in value:
            continue
        ancestor = Path(value).expanduser().absolute()
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return f"{key}={value} cannot be created: {ancestor} is a file; allowed: a folder path"
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return f"{key}={value} cannot be created: {ancestor} is not writable; allowed: a writable folder"
    return None


def is_run_folder(folder: Path) -> bool:
    """A folder this program wrote as a run's home (its files are never code to import): Hydra's
    ``.hydra/`` or the run lock's file."""
    return (folder / ".hydra").is_dir() or RunContext(folder).lock_file.is_file()


def main() -> None:
    """The console script: checks the command line, runs Hydra, exits with the run's status."""
    make_user_code_importable(sys.argv[1:])
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        from framework.cli_help import print_help

        print_help(conf_dir(), sys.argv[1:])
        sys.exit(0)
    from framework.cli_help import (
        missing_plugin_problem,
        renamed_key_problem,
        renamed_option_problem,
        template_key_problem,
        unknown_option_problem,
    )
    from framework.sweeps.callback import finish_open_sweeps

    sys.argv[1:] = quiet_other_ranks(sys.argv[1:])
    problem = (
        renamed_option_problem(conf_dir(), sys.argv[1:])
        or renamed_key_problem(sys.argv[1:])
        or template_key_problem(conf_dir(), sys.argv[1:])
        or unknown_option_problem(conf_dir(), sys.argv[1:])
        or missing_plugin_problem(conf_dir(), sys.argv[1:])
        or output_dir_problem(sys.argv[1:])
    )
    if problem:  # Hydra would answer with a page of options, "Could not load ...", or a traceback
        print(f"error: {problem}", file=sys.stderr)
        exit_with(EXIT_BAD_INPUT)
    try:
        hydra_main()
    except KeyboardInterrupt as interrupt:
        # The last checkpoint is kept; the MLflow run is already marked KILLED.
        finish_open_sweeps()
        print("interrupted: the run is marked KILLED; continue it with resume=auto", file=sys.stderr)
        sys.exit(interrupted_exit_code(interrupt))
    except SystemExit as hydra_exit:
        # A sweeper that raised (Optuna with no finished trial) skipped the sweep's end: do it here.
        finish_open_sweeps()
        # Hydra exits 1 for a config it cannot compose (unknown key or option, wrong type): that
        # is bad input like ours, so it gets our exit code. Once a job has started, 1 means a crash.
        if hydra_exit.code == 1 and _jobs_started == 0:
            exit_with(EXIT_BAD_INPUT)
        if _quiet_stderr is not None and sys.stderr is _quiet_stderr:  # a rank > 0 failed before its job
            print(_quiet_stderr.getvalue(), end="", file=sys.__stderr__)
        raise
    from framework.sweeps import outcome

    exit_with(outcome.exit_code() or (EXIT_BAD_INPUT if _user_errors else EXIT_OK))
