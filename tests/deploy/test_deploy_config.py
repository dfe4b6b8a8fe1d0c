"""The ``deploy`` settings: composed from conf/, checked before any data is read."""

from __future__ import annotations

import pytest
from support import cli_dirs, run_cli

from framework.config import config_problems, validate


def test_default_deploys_fp32_with_calibration_ready(compose_config):
    cfg = compose_config()
    assert cfg.deploy.enabled is True and cfg.deploy.quantize == "none" and cfg.deploy.calibration_batches >= 1
    validate(cfg)
    validate(compose_config(["deploy.quantize=int8", "deploy.calibration_batches=2"]))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["deploy.quantize=fp16"], "deploy.quantize='fp16' is invalid; allowed: none | int8"),
        (["deploy.calibration_batches=0"], "deploy.calibration_batches=0 is invalid; allowed: an integer >= 1"),
        (["deploy.enabled=false", "deploy.quantize=int8"], "deploy.quantize=int8 needs deploy.enabled=true"),
    ],
)
def test_bad_deploy_settings_are_one_line_each(compose_config, overrides, expected):
    problems = config_problems(compose_config(overrides))
    assert len(problems) == 1 and expected in problems[0], problems


def test_bad_deploy_setting_exits_2_before_training(tmp_path):
    result = run_cli(["deploy.calibration_batches=-1", *cli_dirs(tmp_path)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "deploy.calibration_batches=-1 is invalid" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
