"""More bad input, one line each and exit 2 before any data is read (issue 21 item 10): a `???`
value left unset, a user module that cannot be imported (syntax error, import-time error,
sys.exit at import) named with its cause. The command runs in the test's process (run_main)."""

from __future__ import annotations

import pytest
from cli_in_process import run_main
from support import cli_dirs

MODULES = {
    "broken.py": "def f(:\n",
    "needs_timm.py": "import not_installed_package_xyz\n",
    "quitter.py": "import sys\nsys.exit(3)\n",
    "divides.py": "x = 1 / 0\n",
}


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            ["dataset=imagefolder"],
            "error: dataset.root must be set (the chosen options leave it '???'); add dataset.root=...",
        ),
        (["model._target_=broken.Net"], "cannot be imported: SyntaxError: invalid syntax (broken.py, line 1)"),
        (
            ["model._target_=needs_timm.Net"],
            "cannot be imported: ModuleNotFoundError: No module named 'not_installed_package_xyz'",
        ),
        (["model._target_=quitter.Net"], "cannot be imported: its module called sys.exit(3) while being imported"),
        (["model._target_=divides.Net"], "cannot be imported: ZeroDivisionError: division by zero"),
    ],
)
def test_more_bad_input_is_one_line_with_its_cause(tmp_path, overrides, expected):
    for name, text in MODULES.items():
        (tmp_path / name).write_text(text)
    result = run_main([*overrides, *cli_dirs(tmp_path, mlflow=False), "tracking=none"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_a_run_folder_that_cannot_be_created_is_one_line(tmp_path, key):
    (tmp_path / "a_file").write_text("in the way\n")
    args = ["-m", "seed=1"] if key == "hydra.sweep.dir" else []
    result = run_main([*args, "tracking=none", f"{key}={tmp_path}/a_file/run"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: {key}={tmp_path}/a_file/run cannot be created: {tmp_path}/a_file is a file; allowed: a folder path"
    ], result.stderr[-2000:]


def test_a_sqlite_store_in_a_missing_folder_is_said(tmp_path):
    uri = f"sqlite:///{tmp_path}/not/yet/mlflow.db"
    result = run_main(
        [
            "epochs=1",
            f"tracking.uri={uri}",
            f"hydra.run.dir={tmp_path}/run",
            "progress=false",
            f"tracking.artifact_location={tmp_path}/artifacts",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"the folder {tmp_path}/not/yet of tracking.uri={uri} does not exist" in result.stdout + result.stderr
