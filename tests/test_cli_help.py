"""`python run.py --help`: every group and option, the composed config, and user config dirs."""

from __future__ import annotations

from pathlib import Path

from support import run_cli

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_help_lists_every_group_and_option_and_the_config():
    result = run_cli(["--help"])
    assert result.returncode == 0, result.stderr
    for folder in sorted(p for p in CONF.rglob("*") if p.is_dir()):
        group = folder.relative_to(CONF).as_posix()
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if not options or group.startswith("hydra/"):  # conf/hydra only holds the hydra/launcher group
            continue
        assert f"  {group}: {', '.join(options)}" in result.stdout, group
    # Hydra's own launchers and sweepers and the plugins' beside ours (it listed only `slurm`)
    assert "  hydra/launcher: basic, joblib, slurm, submitit_local, submitit_slurm\n" in result.stdout
    assert "  hydra/sweeper: basic, secateurs_optuna\n" in result.stdout
    assert "_target_: framework.models.SimpleCNN" in result.stdout
    assert "torch" not in result.stderr  # nothing heavy was imported, so nothing could complain


def test_help_shows_overrides_and_a_users_config_dir(tmp_path):
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "my_net.yaml").write_text("_target_: my_net.MyNet\nwidth: 8\n")
    result = run_cli(["--config-dir", str(tmp_path / "conf"), "--help", "model=my_net", "pruner=agp"])
    assert result.returncode == 0, result.stderr
    assert "my_net" in result.stdout.split("== Config")[0]  # listed as an option of model
    assert "_target_: my_net.MyNet" in result.stdout and "method: agp" in result.stdout


def test_a_renamed_option_is_named_with_its_new_spelling_unless_a_config_dir_still_has_it(tmp_path):
    from framework.cli_help import renamed_option_problem

    advice = "pruner=sensitivity was renamed; use pruner=std_threshold (pruner.method=std_threshold, pruner.std_multiplier=...)"
    assert renamed_option_problem(CONF, ["pruner=sensitivity"]) == advice
    assert renamed_option_problem(CONF, ["-m", "pruner=agp,sensitivity", "epochs=2"]) == advice
    assert renamed_option_problem(CONF, ["pruner=std_threshold", "task=sensitivity"]) is None
    (tmp_path / "pruner").mkdir()
    (tmp_path / "pruner" / "sensitivity.yaml").write_text("_target_: my_pruner.build\n")
    assert renamed_option_problem(CONF, ["--config-dir", str(tmp_path), "pruner=sensitivity"]) is None
