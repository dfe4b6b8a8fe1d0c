"""``pip install secateurs`` gives a ``secateurs`` command: the wheel, built from this checkout,
installed into a fresh venv outside the repository, runs from any folder with the configs it carries.

The venv sees the test interpreter's site-packages for the third-party dependencies (torch is
gigabytes; a .pth line appends that folder after the venv's own), while ``framework`` comes only
from the wheel: the test asserts where it is imported from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import tomllib
from support import HANG_S

ROOT = Path(__file__).resolve().parents[1]
# What the wheel is built from: the files a clone has (nothing of outputs/, build/ or the venv).
SOURCES = ("framework", "conf", "setup.py", "pyproject.toml", "README.md")
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _run(args, cwd: Path, timeout: float = HANG_S) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv outside the repository with the wheel installed; returns its bin/ folder."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(
            ROOT / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if (ROOT / name).is_dir() else {}),
        )
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", base / "dist", source],
        cwd=base,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (base / "dist").glob("secateurs-*.whl")

    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=base).stdout.strip()
    (Path(site) / "shared_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel], cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin"


@pytest.mark.slow
def test_the_wheel_carries_the_configs_and_the_command_runs_from_any_folder(installed, tmp_path):
    where = _run(
        [
            installed / "python",
            "-c",
            "import framework, framework.config as c; print(framework.__file__); print(c.conf_dir())",
        ],
        cwd=tmp_path,
    )
    package, conf = where.stdout.split()
    assert Path(package).is_relative_to(installed.parent), package
    assert Path(conf) == Path(package).parent / "conf"
    assert sorted(p.relative_to(conf).as_posix() for p in Path(conf).rglob("*.yaml")) == sorted(
        p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")
    )

    helped = _run([installed / "secateurs", "--help"], cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "secateurs [group=option ...]" in helped.stdout and "pruner: " in helped.stdout

    # a user's model beside the command, its config in a --config-dir; no MLflow
    (tmp_path / "my_net.py").write_text(
        textwrap.dedent("""
        from torch import nn

        class MyNet(nn.Module):
            def __init__(self, num_classes: int, in_channels: int):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))

            def forward(self, x):
                return self.body(x)
    """)
    )
    (tmp_path / "my_conf" / "model").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "my_net.yaml").write_text("_target_: my_net.MyNet\n")
    own = _run(
        [
            installed / "secateurs",
            "--config-dir",
            "my_conf",
            "model=my_net",
            "pruner=agp",
            "fold_batchnorm=true",
            "epochs=1",
            "tracking=none",
            "progress=false",
        ],
        cwd=tmp_path,
    )
    assert own.returncode == 0, own.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*")
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "run.log").is_file()


@pytest.mark.slow
def test_the_command_logs_to_the_default_store_in_the_current_folder(installed, tmp_path):
    done = _run(
        [installed / "secateurs", "pruner=agp", "epochs=1", "progress=false", "tracking.log_model=false"], cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    store = tmp_path / "outputs" / "mlflow.db"
    assert store.is_file()
    # installed, not a clone: the end of the run names the store itself, not `make ui`
    assert f"MLflow UI:   mlflow ui --backend-store-uri sqlite:///{store} " in done.stdout + done.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("secateurs").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["sparsity/total"] > 0.5
    # no checkout to take a commit from: the installed package's version (issue 29 item 13)
    assert "git.commit" not in run.data.tags and run.data.tags["secateurs.version"] == PROJECT_VERSION


def test_a_missing_plugin_or_model_library_is_one_line_naming_the_extra(tmp_path):
    # a venv that sees no third-party package: the clone's run.py there has Hydra but no plugins
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path).returncode == 0
    python = venv / "bin" / "python"
    site = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip()
    )
    shared = Path(sysconfig.get_paths()["purelib"])
    # hydra, omegaconf and their own dependencies, without hydra_plugins (the sweep extra)
    for name in ("hydra", "omegaconf", "antlr4", "yaml", "_yaml", "packaging"):
        if (shared / name).exists():
            (site / name).symlink_to(shared / name)
    (site / "secateurs_clone.pth").write_text(f"{ROOT}\n")
    needs = {
        "hydra/launcher=slurm": ("the Hydra plugin hydra-submitit-launcher", "sweeps"),
        "hparams_search=optuna_lr_wd": ("optuna (for the secateurs_optuna sweeper)", "sweeps"),
        "model=timm": ("timm", "timm"),  # an optional model library: its own extra
    }
    for override, (needed, extra) in needs.items():
        done = _run([python, ROOT / "run.py", *(["-m"] if extra == "sweeps" else []), override], cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: {override} needs {needed}, which is not installed; install it with: pip install 'secateurs[{extra}]'"
        ], done.stderr
