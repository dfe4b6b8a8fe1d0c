"""Our Optuna sweeper (hydra_plugins/secateurs_optuna_sweeper) on current Optuna: the search-space
syntax, settings refused before the first trial, and a stored study shared by parallel jobs and
continued by a rerun, read back with Optuna's own API."""

from __future__ import annotations

import functools
import sqlite3

import optuna
import pytest
from cli_in_process import run_main
from hydra.core.utils import JobReturn, JobStatus
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from support import cli_dirs

from hydra_plugins.secateurs_optuna_sweeper._search import (
    SearchSpaceError,
    as_override,
    grid_values,
    parse_search_space,
    probe_values,
)
from hydra_plugins.secateurs_optuna_sweeper._study import (
    SweepSetupError,
    check_same_space,
    continuing_sampler,
    make_sampler,
    make_storage,
    open_study,
)

FAST = ["epochs=1", "tracking.log_model=false"]


def test_hydra_sweep_syntax_becomes_optuna_distributions():
    space = parse_search_space(
        [
            "optimizer.lr=tag(log, interval(0.005, 0.3))",
            "pruner=agp,agp_filter",
            "loader.batch_size=range(16, 64, 16)",
            "pruner.final_sparsity=interval(0.3, 0.9)",
            "seed=tag(int, interval(0, 4))",
            "loader.num_workers=interval(0, 4)",
            "epochs=2",
            "epochs=1",
        ]
    )
    d = space.distributions
    assert d["optimizer.lr"] == FloatDistribution(0.005, 0.3, log=True)
    assert d["pruner"] == CategoricalDistribution(["agp", "agp_filter"])
    assert d["loader.batch_size"] == IntDistribution(16, 48, step=16)  # Hydra's range excludes its stop
    assert d["pruner.final_sparsity"] == FloatDistribution(0.3, 0.9)
    assert d["seed"] == IntDistribution(0, 4)
    assert d["loader.num_workers"] == FloatDistribution(0, 4)  # Hydra reads interval bounds as floats
    assert space.fixed == {"epochs": "1"}  # the last value given wins
    assert grid_values("loader.batch_size", d["loader.batch_size"]) == [16, 32, 48]
    with pytest.raises(SearchSpaceError, match="optimizer.lr is continuous; the grid sampler needs"):
        space.grid()


def test_every_choice_and_both_ends_are_probed_before_a_trial():
    space = parse_search_space(["pruner=agp,agp_filter,agp_channel", "optimizer.lr=interval(0.01, 0.1)"])
    points = probe_values(space)
    assert {p["pruner"] for p in points} == {"agp", "agp_filter", "agp_channel"}
    assert {p["optimizer.lr"] for p in points} == {0.01, 0.1}


@pytest.mark.parametrize(
    "value, typed",
    [
        (True, "x=true"),
        (0.5, "x=0.5"),
        ("agp_filter", "x=agp_filter"),
        ("a b", "x='a b'"),
        (None, "x=null"),
        (3, "x=3"),
    ],
)
def test_values_go_back_to_hydra_as_it_reads_them(value, typed):
    assert as_override("x", value) == typed


def test_an_empty_or_reversed_range_is_refused():
    with pytest.raises(SearchSpaceError, match="optimizer.lr=interval"):
        parse_search_space(["optimizer.lr=interval(0.3, 0.1)"])
    with pytest.raises(SearchSpaceError, match="holds no value"):
        parse_search_space(["epochs=range(5, 1)"])


def test_a_journal_file_keeps_a_study_for_the_next_process(tmp_path):
    path = tmp_path / "studies" / "optuna.log"
    study = optuna.create_study(storage=make_storage(str(path)), study_name="s", direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    again = optuna.load_study(
        study_name="s", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    )
    assert [t.value for t in again.trials] == [0.5]


@pytest.mark.parametrize(
    "args, says",
    [
        (["hydra.sweeper.direction=[maximize,maximize]"], "gives 2 direction(s) for optimized_metric=val/top1"),
        (["hydra.sweeper.direction=up"], "hydra.sweeper.direction=up is invalid; allowed: minimize | maximize"),
        (["optimizer.lr=interval(0.3, 0.1)"], "hydra.sweeper.params: optimizer.lr=interval(0.3, 0.1)"),
        (["pruner=agp,agp_fliter"], "pruner=agp_fliter is not an option of pruner"),
        (["pruner=choice(agp, agp_fliter)"], "a trial's config cannot be composed"),
        (["loader.batch_size=choice(8, 0)"], "loader.batch_size=0 is invalid; allowed: an integer >= 1"),
        (
            ["hydra.sweeper.storage=sqlite:///x.db", "hydra.sweeper.study_name=null"],
            "hydra.sweeper.study_name is empty",
        ),
    ],
)
def test_bad_settings_get_one_line_and_exit_2_before_any_trial(tmp_path, args, says):
    result = run_main(["-m", "hparams_search=optuna_lr_wd", *args, *FAST, *cli_dirs(tmp_path)])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1 and says in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "multirun").glob("*/job.json"))  # no job ran


@pytest.mark.slow
def test_parallel_jobs_share_one_stored_study_and_a_rerun_continues_it(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = [
        "-m",
        "hparams_search=optuna_lr_wd",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        *FAST,
    ]
    first = run_main([*args, *cli_dirs(tmp_path)])
    assert first.returncode == 0, first.stderr[-3000:]
    study = optuna.load_study(study_name="lr_wd", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert sorted(t.user_attrs["hydra.job.num"] for t in study.trials) == [0, 1]
    assert {tuple(sorted(t.params)) for t in study.trials} == {("optimizer.lr", "optimizer.weight_decay")}

    # the same command again (a new sweep dir, as a second day's run gets): the study goes on
    rerun_dirs = [a.replace(f"{tmp_path}/multirun", f"{tmp_path}/multirun2") for a in cli_dirs(tmp_path)]
    again = run_main([*args, *rerun_dirs])
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="lr_wd", storage=storage)
    assert len(study.trials) == 4 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sorted(t.user_attrs["hydra.job.num"] for t in study.trials[2:]) == [2, 3]  # job numbers go on too
    assert sorted(p.name for p in (tmp_path / "multirun2").iterdir() if p.name.isdigit()) == ["2", "3"]
    assert "2 trial(s) already in it" in again.stdout + again.stderr
    # the continued study proposes new points: re-seeded as configured it repeated trials 0 and 1
    first_points = {tuple(sorted(t.params.items())) for t in study.trials[:2]}
    assert not first_points & {tuple(sorted(t.params.items())) for t in study.trials[2:]}


class _Return:
    def __init__(self, value):
        self.return_value = value


def test_a_failed_job_is_a_failed_trial_and_a_finished_grid_is_no_error():
    from framework.sweeps.job import FailedJob
    from hydra_plugins.secateurs_optuna_sweeper._study import tell

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"a": CategoricalDistribution([1, 2])}
    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"a": [1, 2]}), direction="maximize")
    first, second = (study.ask(fixed_distributions=space) for _ in range(2))
    assert tell(study, first, _Return(FailedJob(0, "training loss became nan")), 1) == TrialState.FAIL
    assert tell(study, second, _Return([0.5]), 1) == TrialState.COMPLETE  # a one-metric list is a value
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    third = study.ask(fixed_distributions=space)
    assert tell(study, third, _Return(0.7), 1) == TrialState.COMPLETE  # the grid is done: Optuna's stop is no error
    assert study.best_value == 0.7
    fourth = study.ask(fixed_distributions=space)
    crashed = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("the model raised\nat line 3"))
    assert tell(study, fourth, crashed, 1) == TrialState.FAIL  # a job that raised, not a marker
    assert study.trials[-1].state == TrialState.FAIL and study.best_value == 0.7


LR_WD = parse_search_space(["optimizer.lr=tag(log, interval(0.005, 0.3))", "optimizer.weight_decay=interval(0, 0.1)"])


def stored_study(tmp_path, sampler, n=2, space=LR_WD):
    """A journal-stored study with ``n`` finished trials, as an earlier sweep leaves it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(str(tmp_path / "optuna.log"), "lr_wd", sampler, ["maximize"])
    for _ in range(n):
        study.tell(study.ask(fixed_distributions=space.distributions), 0.5)
    return study


@pytest.mark.parametrize("sampler", ["tpe", "random", "nsgaii", "grid"])
def test_a_continued_study_draws_new_points_reproducibly(tmp_path, sampler):
    space = parse_search_space(["optimizer.lr=0.01,0.02,0.03,0.04", "seed=range(0, 3)"]) if sampler == "grid" else LR_WD
    target = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    factory = functools.partial(
        target.get(sampler) or {"nsgaii": optuna.samplers.NSGAIISampler, "grid": optuna.samplers.GridSampler}[sampler],
        seed=0,
    )
    first = make_sampler(factory, space)
    study = stored_study(tmp_path, first, n=3, space=space)
    earlier = [t.params for t in study.trials]

    def next_points():
        again = open_study(str(tmp_path / "optuna.log"), "lr_wd", make_sampler(factory, space), ["maximize"])
        again.sampler = continuing_sampler(factory, space, again.sampler, len(again.trials))
        points = [again.ask(fixed_distributions=space.distributions) for _ in range(3)]
        for trial in points:
            again.tell(trial, state=TrialState.FAIL)  # leave the study as it was for the next process
        return [t.params for t in points]

    proposed = next_points()
    assert not [p for p in proposed if p in earlier], (earlier, proposed)
    # the same continuation again proposes the same points: reproducible, not random
    study = optuna.load_study(study_name="lr_wd", storage=make_storage(str(tmp_path / "optuna.log")))
    assert len(study.trials) == 6


def test_a_continued_study_with_an_unseeded_sampler_keeps_its_sampler(tmp_path):
    factory = functools.partial(optuna.samplers.TPESampler, seed=None)
    sampler = make_sampler(factory, LR_WD)
    assert continuing_sampler(factory, LR_WD, sampler, 5) is sampler


@pytest.mark.parametrize(
    "other, differs",
    [
        (
            ["pruner.final_sparsity=interval(0.3, 0.9)", "optimizer.lr=tag(log, interval(0.005, 0.3))"],
            "differs at optimizer.weight_decay, pruner.final_sparsity",
        ),
        (["optimizer.lr=interval(0.005, 0.3)", "optimizer.weight_decay=interval(0, 0.1)"], "differs at optimizer.lr"),
    ],
)
def test_a_study_name_shared_by_another_search_space_is_refused(tmp_path, other, differs):
    study = stored_study(tmp_path, optuna.samplers.RandomSampler(seed=0))
    check_same_space(study, LR_WD, "optuna.log")  # the same space continues
    wider = parse_search_space(
        ["optimizer.lr=tag(log, interval(0.001, 0.5))", "optimizer.weight_decay=interval(0, 0.2)"]
    )
    check_same_space(study, wider, "optuna.log")  # and so do wider ranges
    with pytest.raises(SweepSetupError) as info:
        check_same_space(study, parse_search_space(other), "optuna.log")
    message = str(info.value)
    assert "\n" not in message and message.startswith(
        "hydra.sweeper.study_name='lr_wd' in optuna.log holds trials over"
    )
    assert differs in message and "allowed: the same search space, or another study_name" in message


def test_a_read_only_or_unreachable_storage_is_one_line_naming_the_reason(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    db = tmp_path / "optuna.db"
    sqlite3.connect(db).close()  # an empty database file, as an earlier run would leave one
    # read-only: what a read-only folder does to SQLite (the tests run as root, for whom a folder's
    # mode stops nothing); Optuna wraps the database's reason in one about "invalid data"
    cases = {
        f"sqlite:///file:{db}?mode=ro&uri=true": "OperationalError: attempt to write a readonly database",
        f"sqlite:///{tmp_path}/missing/optuna.db": "OperationalError: unable to open database file",
        "htp://host/db": "NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:htp",
    }
    for url, reason in cases.items():
        with pytest.raises(SweepSetupError) as info:
            open_study(url, "lr_wd", optuna.samplers.RandomSampler(seed=0), ["maximize"])
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"hydra.sweeper.storage={url!r} cannot be opened: {reason}")
        assert "invalid data" not in message and "allowed: a storage this process can reach and write" in message
