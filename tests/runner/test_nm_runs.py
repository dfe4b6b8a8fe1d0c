"""``pruner=agp_nm`` from the command line: bad input is one line and exit 2 before training; a run
ends with every selected weight in the 2:4 pattern, dense-shaped with zeros."""

from __future__ import annotations

import pytest
import torch
from cli_in_process import run_main
from support import cli_dirs

from framework.config import config_problems
from framework.pruning.nm import nm_violations, to_blocks


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            [],
            "pruner.m=4 does not divide the input dimension of block1.0.weight (1, weight shape (32, 1, 3, 3)); "
            "exclude it with pruner.exclude=['block1.0.weight']",
        ),
        (["pruner.n=4"], "pruner.n=4 must be below pruner.m=4"),
    ],
)
def test_bad_nm_settings_exit_2_before_training(tmp_path, overrides, expected):
    result = run_main(["pruner=agp_nm", "epochs=2", "tracking=none", *overrides, *cli_dirs(tmp_path, mlflow=False)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_nm_run_ends_in_the_pattern_with_shapes_unchanged(tmp_path):
    result = run_main(
        [
            "pruner=agp_nm",
            "pruner.exclude=[block1.0.weight]",
            "epochs=3",
            "tracking=none",
            "deploy.enabled=false",
            *cli_dirs(tmp_path, mlflow=False),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert state["block2.0.weight"].shape == (64, 32, 3, 3)  # dense-shaped: N:M never thins
    for name in ("block2.0.weight", "block3.0.weight", "classifier.weight"):
        assert nm_violations(state[name], 2, 4) == 0, name
        assert (to_blocks(state[name], 4) != 0).sum(dim=1).float().mean() == pytest.approx(2, abs=0.05), name
    assert (state["block1.0.weight"] != 0).float().mean() > 0.95  # excluded: not pruned


def test_sensitivity_analysis_of_nm_is_one_line(compose_config):
    problems = config_problems(compose_config(["task=sensitivity", "pruner=agp_nm"]))
    assert any("pruner.structure=nm has one level" in p for p in problems), problems
