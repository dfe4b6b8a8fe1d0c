"""The ``deploy`` settings: composed from conf/, checked before any data is read."""

from __future__ import annotations

import pytest
from support import cli_dirs, run_cli

from framework.config import config_problems, validate


def test_default_deploys_fp32_with_calibration_ready_from_the_rulebook_s_defaults(compose_config):
    from dataclasses import asdict

    from framework.deploy.rules import DeployConfig

    cfg = compose_config()
    assert dict(cfg.deploy) == asdict(DeployConfig())  # written once: the composed config is the rulebook's
    assert cfg.deploy.enabled is True and cfg.deploy.quantize == "none" and cfg.deploy.int8_calibration_batches >= 1
    validate(cfg)
    validate(compose_config(["deploy.quantize=int8", "deploy.int8_calibration_batches=2"]))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["deploy.quantize=fp16"], "deploy.quantize='fp16' is invalid; allowed: none | int8"),
        (
            ["deploy.int8_calibration_batches=0"],
            "deploy.int8_calibration_batches=0 is invalid; allowed: an integer >= 1",
        ),
        (["deploy.enabled=false", "deploy.quantize=int8"], "deploy.quantize=int8 needs deploy.enabled=true"),
    ],
)
def test_bad_deploy_settings_are_one_line_each(compose_config, overrides, expected):
    problems = config_problems(compose_config(overrides))
    assert len(problems) == 1 and expected in problems[0], problems


def test_bad_deploy_setting_exits_2_before_training(tmp_path):
    result = run_cli(["deploy.int8_calibration_batches=-1", *cli_dirs(tmp_path)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "deploy.int8_calibration_batches=-1 is invalid" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_the_old_calibration_key_answers_with_one_line_naming_the_new_one(tmp_path):
    result = run_cli(["deploy.quantize=int8", "deploy.calibration_batches=4", *cli_dirs(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: deploy.calibration_batches was renamed; use deploy.int8_calibration_batches"
    ]
    assert not (tmp_path / "run").exists()


# A base install (pip install . without the onnx extra): Python marks a module that cannot be
# imported with a None entry in sys.modules; the command runs as run.py would.
WITHOUT_ONNX = (
    "import sys\n"
    "sys.modules['onnx'] = sys.modules['onnxruntime'] = None\n"
    "sys.argv = ['run.py', *sys.argv[1:]]\n"
    "from framework.app import main\n"
    "main()\n"
)


def test_without_the_onnx_extra_the_default_command_runs_and_says_once_that_the_deploy_step_is_left_out(tmp_path):
    """The default is deploy.enabled=true; int8 or deploy.required=true, asked for by name, are still
    refused before any data is read (issue 29 item 12)."""
    import os
    import subprocess
    import sys

    from support import HANG_S, ROOT

    def command(*overrides, where):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [
            sys.executable,
            "-c",
            WITHOUT_ONNX,
            "debug=fast",
            "progress=false",
            *overrides,
            *cli_dirs(where, mlflow=False),
        ]
        return subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=HANG_S)

    done = command(where=tmp_path / "default")
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in (done.stdout + done.stderr).splitlines() if "secateurs[onnx]" in line]
    assert len(said) == 1 and "the deploy step (deploy.enabled=true) needs onnx and onnxruntime" in said[0], said
    run = tmp_path / "default" / "run"
    assert (run / "checkpoints" / "last.pt").is_file() and not list(run.glob("deploy/*.onnx"))

    refused = command("deploy.quantize=int8", where=tmp_path / "int8")
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: deploy.quantize=int8 needs onnx and onnxruntime, which are not installed; "
        "install the 'onnx' extra: pip install 'secateurs[onnx]' (or deploy.enabled=false)"
    )
