"""More bad input, one line each and exit 2 before any data is read (issue 21 item 10): a `???`
value left unset, a user module that cannot be imported (syntax error, import-time error,
sys.exit at import) named with its cause."""

from __future__ import annotations

import pytest

from support import cli_dirs, run_cli

MODULES = {
    "broken.py": "def f(:\n",
    "needs_timm.py": "import not_installed_package_xyz\n",
    "quitter.py": "import sys\nsys.exit(3)\n",
    "divides.py": "x = 1 / 0\n",
}


@pytest.mark.parametrize("overrides, expected", [
    (["dataset=imagefolder"], "error: dataset.root must be set (the chosen options leave it '???'); add dataset.root=..."),
    (["model._target_=broken.Net"], "cannot be imported: SyntaxError: invalid syntax (broken.py, line 1)"),
    (["model._target_=needs_timm.Net"], "cannot be imported: ModuleNotFoundError: No module named 'not_installed_package_xyz'"),
    (["model._target_=quitter.Net"], "cannot be imported: its module called sys.exit(3) while being imported"),
    (["model._target_=divides.Net"], "cannot be imported: ZeroDivisionError: division by zero"),
])
def test_more_bad_input_is_one_line_with_its_cause(tmp_path, overrides, expected):
    for name, text in MODULES.items():
        (tmp_path / name).write_text(text)
    result = run_cli([*overrides, *cli_dirs(tmp_path, mlflow=False), "tracking=none"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
