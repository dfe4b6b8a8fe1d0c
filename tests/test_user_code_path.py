"""A user's modules are importable by ``_target_`` but never shadow an installed package, and a
run folder the program wrote never becomes importable (issue 21 item 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import HANG_S, ROOT

PROBE = """
import importlib.util, json, sys
sys.argv = [sys.argv[0], *json.loads(sys.argv[1])]
sys.path.insert(0, {root!r})
import framework.app as app
app.make_user_code_importable(sys.argv[1:])
def origin(name):
    spec = importlib.util.find_spec(name)
    return spec.origin if spec else None
print(json.dumps({{name: origin(name) for name in ("onnxruntime", "my_net", "run_folder_module")}}))
"""


def probe(tmp_path: Path, argv: list[str]) -> dict:
    script = tmp_path / "elsewhere" / "probe.py"
    script.parent.mkdir()
    script.write_text(PROBE.format(root=str(ROOT)))
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(argv)],
        cwd=tmp_path / "project",
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_user_module_imports_but_never_shadows_an_installed_package_and_a_run_folder_never_imports(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_net.py").write_text("class MyNet: pass\n")
    (project / "onnxruntime.py").write_text("raise SystemExit('shadowed')\n")
    run_dir = tmp_path / "outputs" / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "conf").mkdir()
    (run_dir / "run_folder_module.py").write_text("raise SystemExit('ran a file the program wrote')\n")

    found = probe(tmp_path, ["--config-dir", str(run_dir / "conf"), "pruner=none"])

    assert found["my_net"] == str(project / "my_net.py")
    assert found["onnxruntime"] != str(project / "onnxruntime.py") and "site-packages" in found["onnxruntime"]
    assert found["run_folder_module"] is None


def test_the_folder_of_a_users_own_config_dir_still_imports(tmp_path):
    (tmp_path / "project").mkdir()
    mine = tmp_path / "mine"
    (mine / "conf").mkdir(parents=True)
    (mine / "run_folder_module.py").write_text("x = 1\n")
    found = probe(tmp_path, ["--config-dir", str(mine / "conf")])
    assert found["run_folder_module"] == str(mine / "run_folder_module.py")
