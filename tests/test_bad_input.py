"""Bad input from the command line: one line naming the key, exit code 2, before any training.

The command runs in the test's process (cli_in_process.run_main): the same checks, output and exit
code as ``python run.py``, without a new interpreter per case."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_in_process import run_main
from support import cli_dirs


@pytest.mark.parametrize(
    "overrides, expected",
    [
        # an unknown option is named before Hydra starts; Hydra's own compose errors (unknown key,
        # wrong type) exit 2 like ours
        (["pruner=agp_fliter"], "error: pruner=agp_fliter is not an option of pruner; allowed: agp | "),
        (["model.shortcutt=B"], "Key 'shortcutt' is not in struct"),
        (["epochs=many"], "epochs"),
        (["tracking.experiment="], "tracking.experiment='' is invalid"),
        (["lr_scheduler=step", "lr_scheduler.step_size=0"], "lr_scheduler.step_size=0 is invalid"),
        (
            ["pruner=agp_filter", "pruner.scope=global", "pruner.budget=latency", "pruner.target_latency_ms=-1"],
            "pruner.target_latency_ms=-1 is invalid; allowed: null or a number of milliseconds > 0",
        ),
        (["dataset=synthetic", "dataset.shape=[3,32]"], "dataset (framework.data.Synthetic): shape=[3, 32] is invalid"),
        (
            ["model=torchvision", "model.name=resnet7", "dataset=synthetic"],
            "model (framework.models.torchvision_model): model.name='resnet7' is not a torchvision classification model",
        ),
    ],
)
def test_bad_input_exits_2_with_the_key(tmp_path, overrides, expected):
    result = run_main([*overrides, *cli_dirs(tmp_path)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize("name", ["alexnet", "vit_b_16"])
def test_model_that_cannot_take_the_input_shape_is_one_line_before_training(tmp_path, name):
    result = run_main(
        [
            "model=torchvision",
            f"model.name={name}",
            "dataset=synthetic",
            "dataset.train_size=8",
            "dataset.val_size=8",
            *cli_dirs(tmp_path),
        ]
    )
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert (
        f"model._target_=framework.models.torchvision_model (model.name={name}) cannot take the dataset's "
        "inputs of shape (3, 32, 32)"
    ) in line
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_sweep_with_an_unknown_option_stops_before_its_parent_run_is_opened(tmp_path):
    result = run_main(["-m", "pruner=agp,agp_fliter", "epochs=1", *cli_dirs(tmp_path, fresh_store=True)])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2, result.stderr[-2000:]
    options = sorted(path.stem for path in (Path(__file__).resolve().parents[1] / "conf" / "pruner").glob("*.yaml"))
    assert "agp" in options and "wanda" in options
    assert errors == [f"error: pruner=agp_fliter is not an option of pruner; allowed: {' | '.join(options)}"]
    assert not (tmp_path / "mlflow.db").exists()  # no store, so no empty KILLED parent run
