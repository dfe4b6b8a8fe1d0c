"""An Optuna sweep killed in the middle of a trial, then run again with ``resume=auto``: the trial
runs again as the same job, resumed from its checkpoint, and ends bit-for-bit where an
uninterrupted run of the same values ends (issue 29). Kills are exact (tests/kill_points.py)."""

from __future__ import annotations

import json

import optuna
import torch
from kill_points import run_forked, run_killed_at
from omegaconf import OmegaConf
from optuna.trial import TrialState

# one trial of two tiny epochs, in a journal-stored study; the deploy step measures latencies,
# which no two runs share
TRIAL = [
    "tracking=none",
    "epochs=2",
    "loader.limit_train_batches=4",
    "loader.limit_val_batches=2",
    "deploy.enabled=false",
    "progress=false",
]
STEPS_PER_EPOCH = 4 + 2  # EpochAverages.update: once per training step and once per validation batch


def sweep_command(tmp_path) -> list[str]:
    return [
        "-m",
        "hparams_search=optuna_lr_wd",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweeper.storage={tmp_path / 'optuna.log'}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *TRIAL,
    ]


def app(argv: list[str]):
    def run():
        import sys

        from framework.app import main

        sys.argv = ["run.py", *argv]
        main()

    return run


def first_trial_values() -> list[str]:
    """The overrides of the preset's first trial, drawn as the sweeper draws them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from support import ROOT

    from hydra_plugins.secateurs_optuna_sweeper._search import as_override
    from hydra_plugins.secateurs_optuna_sweeper._study import make_sampler, search_space

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            hydra = compose("config", ["hparams_search=optuna_lr_wd"], return_hydra_config=True).hydra.sweeper
    finally:
        GlobalHydra.instance().clear()
    space = search_space(hydra.params, [])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(instantiate(hydra.sampler), space), direction="maximize")
    trial = study.ask(fixed_distributions=space.distributions)
    return [as_override(k, v) for k, v in trial.params.items()]


def final_state(run_dir):
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return checkpoint, (run_dir / "metrics.jsonl").read_text()


def load_study(tmp_path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.log")))
    return optuna.load_study(study_name="lr_wd", storage=storage)


def test_a_sweep_killed_during_a_trial_resumes_it_exactly(tmp_path, run_experiment):
    # the uninterrupted run first, at the values the preset's seeded sampler draws first (it also
    # warms this process up, so the forked sweeps below start at once)
    values = first_trial_values()
    run_experiment([*values, *TRIAL], tmp_path / "straight")

    command = sweep_command(tmp_path)
    # killed in the second epoch's second training step
    run_killed_at("framework.training.metrics:EpochAverages.update", STEPS_PER_EPOCH + 2, app(command))
    job = tmp_path / "multirun" / "0"
    assert torch.load(job / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1  # one epoch done
    [stopped] = load_study(tmp_path).trials
    assert stopped.state == TrialState.RUNNING  # SIGKILL: nobody could tell Optuna

    assert run_forked(app([*command, "resume=auto"])) == 0
    first, again = load_study(tmp_path).trials
    assert (first.state, again.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert again.params == first.params and again.user_attrs["hydra.job.num"] == 0
    assert [f"{k}={v!r}" for k, v in first.params.items()] == values
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir() if p.name.isdigit()) == ["0"]
    assert json.loads((job / "job.json").read_text())["status"] == "FINISHED"
    assert OmegaConf.load(tmp_path / "multirun" / "optimization_results.yaml").best_trial == 1

    straight, straight_metrics = final_state(tmp_path / "straight")
    resumed, resumed_metrics = final_state(job)
    assert resumed["epoch"] == straight["epoch"] == 2
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for index, state in straight["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, resumed["optimizer"]["state"][index][name]), (index, name)
    assert resumed_metrics == straight_metrics
