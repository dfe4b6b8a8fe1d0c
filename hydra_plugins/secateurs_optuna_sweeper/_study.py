"""One search: check the settings, open (or continue) the study, then ask, launch and tell in
batches of ``n_jobs`` trials.

Everything that can be wrong with the settings is found before the first trial is asked for, so a
mistake neither runs jobs nor leaves trials in a stored study. A job that fails (it returns a value
``float()`` rejects, or raises) is told to Optuna as FAIL, one line says so, and the search goes
on; when no trial finished there is no best value, and one line says that instead of a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from ._search import SearchSpace, SearchSpaceError, as_override, parse_search_space, probe_values

log = logging.getLogger(__name__)
DIRECTIONS = ("minimize", "maximize")
RESULTS_FILE = "optimization_results.yaml"
CONTINUE_THEMSELVES = (optuna.samplers.GridSampler, optuna.samplers.BruteForceSampler, optuna.samplers.QMCSampler)


class SweepSetupError(ValueError):
    """A sweeper setting that cannot work; each line names the key, the value and what is allowed."""


def run_study(sweeper, arguments: list[str]) -> list[Any]:
    config = sweeper.config
    directions = check_settings(sweeper, config)
    space = search_space(sweeper.params, arguments)
    check_jobs_compose(sweeper, space)
    sampler = make_sampler(sweeper.sampler_conf, space)
    n_trials = sweeper.n_trials
    if isinstance(sampler, (optuna.samplers.GridSampler, optuna.samplers.BruteForceSampler)):
        size = 1
        for values in space.grid().values():
            size *= len(values)
        n_trials = min(n_trials, size)
    sweep_dir = str(config.hydra.sweep.dir)
    resuming = space.fixed.get("resume") == "auto"
    if resuming:
        check_resumable(sweeper.storage, sweep_dir)
    study = open_study(sweeper.storage, sweeper.study_name, sampler, directions)
    check_same_space(study, space, sweeper.storage)
    already = len(study.trials)
    if already:
        study.sampler = continuing_sampler(sweeper.sampler_conf, space, sampler, already)
    log.info(
        "Optuna %s: study %r in %s, %s, %s; %d trial(s) already in it",
        optuna.__version__,
        study.study_name,
        sweeper.storage or "memory",
        type(sampler).__name__,
        "/".join(directions),
        already,
    )
    trials = Trials(study, sweeper.launcher, space, sweep_dir, len(directions))
    to_go = n_trials
    if resuming:  # this sweep dir's trials count towards n_trials; a killed sweep's trials run again
        stopped = stopped_trials(study, sweep_dir)
        to_go -= len(ours(study, sweep_dir)) - len(stopped)
        for trial in stopped:
            trials.run_again(trial)
            to_go -= 1
    while to_go > 0:
        batch = min(to_go, sweeper.n_jobs)
        trials.run_new(batch)
        to_go -= batch

    finished, failed = trials.told[TrialState.COMPLETE], trials.told[TrialState.FAIL]
    log.info(
        "Optuna: %d trial(s) run, %d finished, %d failed; study %r now holds %d",
        finished + failed,
        finished,
        failed,
        study.study_name,
        len(study.trials),
    )
    write_results(study, directions, Path(sweep_dir) / RESULTS_FILE)
    return trials.returns


JOB_NUM, SWEEP_DIR = "hydra.job.num", "hydra.sweep.dir"  # each trial's user attributes: where its run is


class Trials:
    """Asks, launches and tells: one batch of trials at a time, each trial a Hydra job."""

    def __init__(self, study: optuna.Study, launcher, space: SearchSpace, sweep_dir: str, n_objectives: int):
        self.study, self.launcher, self.space = study, launcher, space
        self.sweep_dir, self.n_objectives = sweep_dir, n_objectives
        self.returns: list[Any] = []
        self.told = {TrialState.COMPLETE: 0, TrialState.FAIL: 0}

    def next_job_num(self) -> int:
        """Job numbers continue the study's: trial N is job N when one sweeper runs the study."""
        nums = [int(t.user_attrs[JOB_NUM]) for t in self.study.trials if JOB_NUM in t.user_attrs]
        return max([len(self.study.trials) - 1, *nums]) + 1

    def run_new(self, count: int) -> None:
        job_num = self.next_job_num()
        self.launch([self.study.ask(fixed_distributions=self.space.distributions) for _ in range(count)], job_num)

    def run_again(self, stopped: optuna.trial.FrozenTrial) -> None:
        """A trial its sweep left RUNNING (the process was killed): Optuna cannot reopen a trial, so
        it is marked FAIL and asked again with the same values, as the same job, which resumes from
        its checkpoint (``resume=auto``)."""
        tell_safely(self.study, stopped.number, state=TrialState.FAIL)
        self.study.enqueue_trial(stopped.params, skip_if_exists=False)
        again = self.study.ask(fixed_distributions=self.space.distributions)
        job_num = int(stopped.user_attrs[JOB_NUM])
        log.info(
            "Optuna: trial %d (job %d) was left running by a sweep that stopped; it runs again as trial %d, "
            "job %d resuming from its checkpoint",
            stopped.number,
            job_num,
            again.number,
            job_num,
        )
        self.launch([again], job_num)

    def launch(self, trials: list[optuna.Trial], job_num: int) -> None:
        overrides = []
        for i, trial in enumerate(trials):
            trial.set_user_attr(JOB_NUM, job_num + i)
            trial.set_user_attr(SWEEP_DIR, self.sweep_dir)
            params = (as_override(k, v) for k, v in trial.params.items())
            overrides.append(tuple([*params, *(f"{k}={v}" for k, v in self.space.fixed.items())]))
        try:
            results = self.launcher.launch(overrides, initial_job_idx=job_num)
        except BaseException:
            for trial in trials:  # an interrupted batch leaves no trial RUNNING in a stored study
                tell_safely(self.study, trial, state=TrialState.FAIL)
            raise
        for trial, result in zip(trials, results):
            self.told[tell(self.study, trial, result, self.n_objectives)] += 1
        self.returns.extend(results)


def ours(study: optuna.Study, sweep_dir: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials launched into ``sweep_dir`` (by this sweep or an earlier run of it)."""
    here = Path(sweep_dir).resolve()
    return [t for t in study.trials if SWEEP_DIR in t.user_attrs and Path(t.user_attrs[SWEEP_DIR]).resolve() == here]


def stopped_trials(study: optuna.Study, sweep_dir: str) -> list[optuna.trial.FrozenTrial]:
    """This sweep dir's trials still RUNNING: their sweep was killed (one sweep at a time holds a
    sweep dir, so none of them is running now)."""
    return [t for t in ours(study, sweep_dir) if t.state == TrialState.RUNNING and JOB_NUM in t.user_attrs]


def check_resumable(url: str | None, sweep_dir: str) -> None:
    """``resume=auto`` in a sweep dir with jobs continues its study, which must have been stored."""
    if url is None and any(Path(sweep_dir).glob("*/.hydra/overrides.yaml")):
        raise SweepSetupError(
            f"resume=auto continues the study of the sweep in {sweep_dir}, but hydra.sweeper.storage=null kept "
            "it in memory, and it ended with its process; allowed: the storage the sweep used "
            "(hydra.sweeper.storage=sqlite:///optuna.db, ...) or a new hydra.sweep.dir"
        )


def tell(study: optuna.Study, trial: optuna.Trial, result: Any, n_objectives: int) -> TrialState:
    """The job's value to Optuna: COMPLETE with its number(s), or FAIL with one line saying why."""
    try:
        value = result.return_value  # re-raises a job's exception (status FAILED)
        # a FailedJob is neither a list nor a float: float() raises, so the trial FAILs
        values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
        if len(values) != n_objectives:
            raise ValueError(f"the job gave {len(values)} values for {n_objectives} directions")
    except Exception as error:  # any failure of the job is this trial's FAIL
        tell_safely(study, trial, state=TrialState.FAIL)
        log.warning(
            "Optuna trial %d FAIL: %s", trial.number, str(error).splitlines()[0] if str(error) else type(error).__name__
        )
        return TrialState.FAIL
    tell_safely(study, trial, values=values)
    return TrialState.COMPLETE


def tell_safely(study: optuna.Study, trial: optuna.Trial | int, **outcome: Any) -> None:
    """``study.tell``; the grid sampler stops the study once every point is tried, which Optuna
    allows only inside ``study.optimize``: the trial itself is already recorded by then."""
    try:
        study.tell(trial, **outcome)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


def check_settings(sweeper, config) -> list[str]:
    """The directions, one per objective; every other scalar setting checked on the way."""
    problems = []
    raw = sweeper.direction
    directions = [str(d) for d in raw] if OmegaConf.is_list(raw) or isinstance(raw, (list, tuple)) else [str(raw)]
    if not directions or any(d not in DIRECTIONS for d in directions):
        problems.append(
            f"hydra.sweeper.direction={_shown(raw)} is invalid; allowed: minimize | maximize, "
            "or a list of them, one per objective"
        )
    metric = OmegaConf.select(config, "optimized_metric", default=None)
    if metric is not None and not problems:
        names = [str(m) for m in metric] if OmegaConf.is_list(metric) else [str(metric)]
        if len(names) != len(directions):
            problems.append(
                f"hydra.sweeper.direction={_shown(raw)} gives {len(directions)} direction(s) for "
                f"optimized_metric={_shown(metric)} ({len(names)} metric(s)); allowed: one direction "
                "per metric, in the same order"
            )
    for key, value in (("n_trials", sweeper.n_trials), ("n_jobs", sweeper.n_jobs)):
        if not isinstance(value, int) or value < 1:
            problems.append(f"hydra.sweeper.{key}={value!r} is invalid; allowed: an integer >= 1")
    if sweeper.storage is not None and not sweeper.study_name:
        problems.append(
            f"hydra.sweeper.study_name is empty with storage={sweeper.storage!r}; allowed: a name, "
            "so that a rerun of the sweep continues the same study"
        )
    if problems:
        raise SweepSetupError("\n".join(problems))
    return directions


def search_space(params: Any, arguments: Sequence[str]) -> SearchSpace:
    entries = [f"{k}={v}" for k, v in (params or {}).items()]
    try:
        return parse_search_space([*entries, *arguments])
    except SearchSpaceError as error:
        raise SweepSetupError(f"hydra.sweeper.params: {error}") from None
    except Exception as error:  # Hydra's parser: the override it could not read
        raise SweepSetupError(f"hydra.sweeper.params: {str(error).splitlines()[0]}") from None


def check_jobs_compose(sweeper, space: SearchSpace) -> None:
    """Compose a job's config at every choice and at both ends of every range, and run the task's
    own config checks on it when it has them (secateurs' ``framework.config.config_problems``)."""
    loader = sweeper.hydra_context.config_loader
    try:
        from framework.config import config_problems
    except ImportError:  # the sweeper used by another Hydra app
        config_problems = None
    seen: list[str] = []
    for point in probe_values(space):
        overrides = [*(as_override(k, v) for k, v in point.items()), *(f"{k}={v}" for k, v in space.fixed.items())]
        try:
            cfg = loader.load_sweep_config(sweeper.config, overrides)
        except Exception as error:
            raise SweepSetupError(
                f"a trial's config cannot be composed ({' '.join(overrides)}): {str(error).splitlines()[0]}"
            ) from None
        for problem in config_problems(cfg) if config_problems else []:
            if problem not in seen:
                seen.append(problem)
    if seen:
        raise SweepSetupError("\n".join(seen))


def make_sampler(factory: Any, space: SearchSpace) -> optuna.samplers.BaseSampler:
    """``factory``: the sampler node, which Hydra has made a partial (``_partial_: true``)."""
    func = getattr(factory, "func", None)
    name = getattr(func, "__name__", str(func))
    try:
        if func is optuna.samplers.GridSampler:
            return factory(search_space=space.grid())
        return factory()
    except SearchSpaceError as error:
        raise SweepSetupError(f"hydra.sweeper.sampler={name}: {error}") from None
    except Exception as error:
        raise SweepSetupError(
            f"hydra.sweeper.sampler={name} cannot be made: {type(error).__name__}: {str(error).splitlines()[0]}"
        ) from None


def continuing_sampler(factory: Any, space: SearchSpace, sampler, already: int) -> optuna.samplers.BaseSampler:
    """The sampler for a study that already holds ``already`` trials. Seeded as configured, it
    would draw the first sweep's start-up points again (the same random numbers in the same order),
    so its seed is derived from the configured one and ``already``: still reproducible, never a
    repeat. Unseeded samplers draw afresh anyway; the grid, brute-force and QMC samplers go on where
    the study stands (the points tried, or the sequence's position, are kept in it), and the grid's
    seed orders its points, so another seed would revisit them."""
    seed = getattr(factory, "keywords", {}).get("seed")
    if seed is None or isinstance(sampler, CONTINUE_THEMSELVES):
        return sampler
    derived = int(np.random.SeedSequence([int(seed), already]).generate_state(1)[0])
    log.info("Optuna: a continued study: sampler seed %d with %d trial(s) before -> seed %d", seed, already, derived)
    return make_sampler(functools.partial(factory, seed=derived), space)


def check_same_space(study: optuna.Study, space: SearchSpace, url: str | None) -> None:
    """A stored study searched over other parameters (or other choices) is refused: its best
    trial would be reported as this search's, and the sampler would model them as one space."""
    earlier: dict[str, Any] = {}
    for trial in study.trials:
        earlier.update(trial.distributions)
    if not earlier:
        return
    differs = sorted(set(earlier) ^ set(space.distributions))
    for name in sorted(set(earlier) & set(space.distributions)):
        try:
            optuna.distributions.check_distribution_compatibility(earlier[name], space.distributions[name])
        except ValueError:
            differs.append(name)
    if differs:
        raise SweepSetupError(
            f"hydra.sweeper.study_name={study.study_name!r} in {url} holds trials over "
            f"{', '.join(sorted(earlier))}, not this sweep's {', '.join(space.distributions) or '(no parameters)'} "
            f"(differs at {', '.join(differs)}); allowed: the same search space, or another study_name"
        )


def make_storage(url: str | None) -> Any:
    """None (memory), an SQLAlchemy URL, or the path of a journal file (no database needed; safe
    for several processes on one machine or a shared filesystem with working locks)."""
    if url is None:
        return None
    url = str(url)
    if "://" in url:
        engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(url))


def open_study(url: str | None, name: str | None, sampler, directions: list[str]) -> optuna.Study:
    try:
        study = optuna.create_study(
            storage=make_storage(url), sampler=sampler, study_name=name, directions=directions, load_if_exists=True
        )
    except Exception as error:
        raise SweepSetupError(
            f"hydra.sweeper.storage={url!r} cannot be opened: {root_reason(error)}; allowed: a storage this "
            "process can reach and write (every trial is recorded there): sqlite:///path.db, "
            "postgresql://..., mysql://..., or a journal file path"
        ) from None
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise SweepSetupError(
            f"hydra.sweeper.study_name={name!r} in {url} was created with direction {stored}, "
            f"not {directions}; allowed: the same directions, or another study_name"
        )
    return study


def write_results(study: optuna.Study, directions: list[str], path: Path) -> None:
    """The best trial (or the Pareto front) of the whole study, printed and saved; when no trial
    has finished, one line says so and nothing is written."""
    if not study.get_trials(states=(TrialState.COMPLETE,)):
        log.error(
            "Optuna: no trial of study %r has finished, so there is no best value (the failed jobs are listed below)",
            study.study_name,
        )
        return
    base = {"name": "optuna", "study_name": study.study_name, "n_trials_in_study": len(study.trials)}
    if len(directions) == 1:
        best = study.best_trial
        result = {**base, "best_params": best.params, "best_value": best.value, "best_trial": best.number}
        log.info("Optuna: best value %s with %s (trial %d)", best.value, best.params, best.number)
    else:
        front = [{"params": t.params, "values": t.values, "trial": t.number} for t in study.best_trials]
        result = {**base, "solutions": front}
        log.info("Optuna: %d trial(s) on the Pareto front", len(front))
    OmegaConf.save(OmegaConf.create(result), path)


def root_reason(error: BaseException) -> str:
    """The first line of the innermost cause: Optuna wraps the database's own reason ("attempt to
    write a readonly database") in a general one about invalid data."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _shown(value: Any) -> str:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return str(value).replace("'", "").replace(" ", "")
