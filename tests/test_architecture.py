"""The design's arrows, checked on the code (docs/architecture.md):

    run.py -> runner -> {training, tracking, pruning, deploy, data, models, analysis}

``pruning/`` is plain torch (no Hydra, MLflow or training loop); ``training/`` knows hooks, not
pruning or MLflow; nothing but the entry (``framework/app.py``, which ``run.py`` and the
``secateurs`` command call, and tests) imports the runner; and no module of
``framework/`` imports, even lazily, a module that imports it back.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from support import HANG_S

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "framework"

# The foundation the root of framework/ may hold beside its packages.
ROOT_MODULES = {"__init__", "errors", "config", "components", "serialization", "cli_help", "app"}
# The process's entry: run.py and the console script call it; it alone may import the runner.
ENTRY = "framework.app"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports, at the top or inside a function (not under TYPE_CHECKING)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    skipped = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block) for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # `from pkg import sub` depends on the module pkg.sub when there is one
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found


GRAPH = {name: {m for m in imports_of(name) if m in MODULES and m != name} for name in MODULES}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_root_of_framework_holds_only_the_foundation_and_packages():
    strays = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ROOT_MODULES)
    assert strays == [], f"modules at framework/'s root that belong in a package: {strays}"


def test_no_import_cycle_anywhere_in_framework():
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


FORBIDDEN = [
    # (package, what it must not import, why)
    (
        "framework.pruning",
        (
            "hydra",
            "omegaconf",
            "mlflow",
            "framework.training",
            "framework.tracking",
            "framework.runner",
            "framework.sweeps",
        ),
        "the engine is plain torch",
    ),
    (
        "framework.training",
        ("mlflow", "framework.pruning", "framework.tracking", "framework.runner", "framework.sweeps"),
        "the loop knows hooks, not pruning or MLflow",
    ),
    ("framework.deploy", ("hydra", "mlflow", "framework.runner", "framework.sweeps"), "deploy is plain torch + ONNX"),
    ("framework.models", ("mlflow", "framework.runner", "framework.sweeps", "framework.tracking"), "models are torch"),
    ("framework.data", ("mlflow", "framework.runner", "framework.sweeps", "framework.pruning"), "data is data"),
]


@pytest.mark.parametrize("package, forbidden, why", FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_the_arrows_point_one_way(package, forbidden, why):
    crossings = sorted(
        f"{name} imports {target}"
        for name in MODULES
        if _within(name, package)
        for target in imports_of(name)
        if any(_within(target, f) for f in forbidden)
    )
    assert crossings == [], f"{package}: {why}:\n" + "\n".join(crossings)


def test_nothing_but_the_entry_imports_the_runner():
    importers = sorted(
        name
        for name in MODULES
        if not _within(name, "framework.runner") and name != ENTRY
        for target in imports_of(name)
        if _within(target, "framework.runner")
    )
    assert importers == []


def test_every_module_imports_in_a_fresh_interpreter_and_the_engine_pulls_in_no_loop_or_tracker():
    # At run time too: importing every module works (no cycle at import), and importing the whole
    # engine leaves Hydra, MLflow and the training loop unimported.
    names = sorted(MODULES)
    code = (
        "import importlib, sys\n"
        "for name in [n for n in sys.argv[1:] if n == 'framework.pruning' or n.startswith('framework.pruning.')]:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'mlflow')"
        " or m.startswith(('framework.training', 'framework.tracking', 'framework.runner')))\n"
        "assert not leaked, leaked\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "print('ok', len(sys.argv) - 1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True, timeout=HANG_S
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", str(len(names))]
