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
ROOT_MODULES = {"__init__", "errors", "config", "components", "serialization", "cli_help", "app", "run_context"}
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


# ----------------------------------------------------------------------------- sizes and seams
MAX_FUNCTION_LINES = 80  # from the `def` line to the last line of the body, docstring included
MAX_FILE_LINES = 600
MAX_PARAMETERS = 12
MAX_PRUNING_ROOT_MODULES = 16  # framework/pruning/*.py, __init__ included; the rest lives in its rooms


def _functions(tree: ast.AST):
    """(qualified name, node) of every function and method, nested ones included."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found.append((name, child))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


TREES = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Every parameter but ``self``/``cls``. A ``**fields`` catch-all counts as one: that is how a
    function takes the keyword fields of a spec (``build_pruner(model, **fields)`` passes them to
    ``PrunerSpec.of``, which names the fields and refuses any other), so those fields are excepted."""
    arguments = function.args
    names = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    count = len(names) + bool(arguments.vararg) + bool(arguments.kwarg)
    return count - bool(names and names[0].arg in ("self", "cls"))


def is_public(qualified: str) -> bool:
    """A public function or method of a public class; a public class's ``__init__`` is public."""
    parts = qualified.split(".")
    return not any(p.startswith("_") and p != "__init__" for p in parts)


def test_no_function_in_framework_is_over_80_lines():
    long = sorted(
        f"{name}.{qualified}: {node.end_lineno - node.lineno + 1} lines"
        for name, tree in TREES.items()
        for qualified, node in _functions(tree)
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    )
    assert long == [], "functions over 80 lines:\n" + "\n".join(long)


def test_no_file_in_framework_is_over_600_lines():
    long = sorted(
        f"{path.relative_to(ROOT)}: {len(lines)} lines"
        for path in MODULES.values()
        if len(lines := path.read_text().splitlines()) > MAX_FILE_LINES
    )
    assert long == [], "files over 600 lines:\n" + "\n".join(long)


def test_no_public_function_takes_more_than_12_parameters():
    wide = sorted(
        f"{name}.{qualified}: {parameter_count(node)} parameters"
        for name, tree in TREES.items()
        for qualified, node in _functions(tree)
        if is_public(qualified) and parameter_count(node) > MAX_PARAMETERS
    )
    assert wide == [], "public functions with more than 12 parameters:\n" + "\n".join(wide)


def test_the_parameter_count_excepts_only_a_specs_keyword_fields():
    function = ast.parse("def build(model, spec=None, *, example_input=None, **fields): ...").body[0]
    assert parameter_count(function) == 4
    method = ast.parse("def update(self, a, b, *rest, c=1): ...").body[0]
    assert parameter_count(method) == 4
    assert is_public("Engine.__init__") and not is_public("Engine._plan") and not is_public("_helper")


def test_the_pruning_root_holds_at_most_16_modules():
    root = sorted(p.name for p in (PACKAGE / "pruning").glob("*.py"))
    assert len(root) <= MAX_PRUNING_ROOT_MODULES, root


# A pruner is probed when getattr/hasattr reads a member off it: an object whose name says it is a
# pruner or an engine (pruner, self.pruner, pruning_hook.pruner, engine), or `self` inside a class
# whose name ends in Pruner or Engine. Every member of the Pruner protocol exists on every pruner.
PROBES = ("getattr", "hasattr")
PRUNER_NAMES = ("pruner", "engine")


def _names_a_pruner(target: ast.expr, classes: list[str]) -> bool:
    if isinstance(target, ast.Name) and target.id == "self":
        return bool(classes) and classes[-1].endswith(("Pruner", "Engine"))
    identifier = target.id if isinstance(target, ast.Name) else target.attr if isinstance(target, ast.Attribute) else ""
    return any(word in identifier.lower() for word in PRUNER_NAMES)


def pruner_probes(tree: ast.AST) -> list[str]:
    """``line: call`` of every getattr/hasattr on a pruner in ``tree`` (see above)."""
    found: list[str] = []

    def visit(node: ast.AST, classes: list[str]) -> None:
        if isinstance(node, ast.ClassDef):
            classes = [*classes, node.name]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in PROBES
            and node.args
            and _names_a_pruner(node.args[0], classes)
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        for child in ast.iter_child_nodes(node):
            visit(child, classes)

    visit(tree, [])
    return found


def test_nothing_in_framework_probes_a_pruner_with_getattr():
    probes = sorted(f"{name}:{probe}" for name, tree in TREES.items() for probe in pruner_probes(tree))
    assert probes == [], "read these members directly (the Pruner protocol has them):\n" + "\n".join(probes)


@pytest.mark.parametrize(
    "code, probes",
    [
        ("getattr(pruner, 'nm', None)", 1),
        ("x = getattr(self.pruner, 'folded_pairs', None)", 1),
        ("hasattr(pruning_hook.pruner, 'calibration')", 1),
        ("getattr(engine, 'plans', None)", 1),
        ("class CoupledPruningEngine:\n    def f(self, key):\n        return getattr(self, key)", 1),
        ("class Trainer:\n    def f(self, key):\n        return getattr(self, key)", 0),
        ("getattr(module, 'weight', None); getattr(self.rule, 'criterion', None)", 0),
    ],
)
def test_the_probe_detector_finds_a_getattr_on_a_pruner(code, probes):
    assert len(pruner_probes(ast.parse(code))) == probes


# -- hooks: built in one place, never holding one another -------------------------------------

HOOK_BUILDER_MODULE = "framework.runner.hooks"
HOOK_BUILDER = "build_hooks"


def _class_bases() -> dict[str, set[str]]:
    """Every class defined in framework/ -> the names of its bases (``Hook``, ``hooks.Hook``)."""
    bases: dict[str, set[str]] = {}
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names = {
                    b.id if isinstance(b, ast.Name) else b.attr
                    for b in node.bases
                    if isinstance(b, ast.Name | ast.Attribute)
                }
                bases.setdefault(node.name, set()).update(names)
    return bases


def hook_classes() -> set[str]:
    """The names of ``framework.training.hooks.Hook`` and of every class of framework/ that derives from it."""
    bases, found = _class_bases(), {"Hook"}
    while True:
        more = {name for name, parents in bases.items() if parents & found} - found
        if not more:
            return found
        found |= more


def _constructions(tree: ast.AST, classes: set[str]) -> list[tuple[str, str, int]]:
    """(class, enclosing top-level function or "<module>", line) for each call of a class in ``classes``."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = (
                child.name
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and function == "<module>"
                else function
            )
            if isinstance(child, ast.Call):
                callee = child.func
                name = (
                    callee.id
                    if isinstance(callee, ast.Name)
                    else callee.attr
                    if isinstance(callee, ast.Attribute)
                    else None
                )
                if name in classes:
                    found.append((name, function, child.lineno))
            visit(child, inner)

    visit(tree, "<module>")
    return found


def _called_from(tree: ast.Module, root: str) -> set[str]:
    """The module's top-level functions that ``root`` calls, directly or through each other, and ``root``."""
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    reached, todo = {root}, [root]
    while todo:
        for node in ast.walk(functions[todo.pop()]):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
                if node.func.id not in reached:
                    reached.add(node.func.id)
                    todo.append(node.func.id)
    return reached


def test_only_build_hooks_constructs_hooks():
    # A hook is a class of framework/ deriving from Hook (found by name through the class
    # statements, so a new hook is covered as soon as it is written); constructing one means
    # calling it by that name. Every such call must sit in framework/runner/hooks.py, in
    # build_hooks or in a function of that module that build_hooks calls (directly or through
    # another), so the order and every rank-0 choice stay in one place.
    classes = hook_classes()
    assert {"PruningHook", "ThinningHook", "TrackingHook", "CheckpointHook", "DistillationHook"} <= classes
    builder_tree = ast.parse(MODULES[HOOK_BUILDER_MODULE].read_text())
    allowed = _called_from(builder_tree, HOOK_BUILDER)
    strays = []
    for name, path in MODULES.items():
        for cls, function, line in _constructions(ast.parse(path.read_text()), classes):
            if name != HOOK_BUILDER_MODULE or function not in allowed:
                strays.append(f"{name}:{line} constructs {cls} in {function}")
    assert strays == [], "hooks constructed outside build_hooks:\n" + "\n".join(strays)
    assert _constructions(builder_tree, classes), "build_hooks constructs no hook: the check would see nothing"


def test_no_hook_holds_another_hook(compose_config, tmp_path):
    # The hooks of a run with every part that once held another (pruning, thinning, deploy, mask
    # synchronisation on 2 ranks, distillation, a regularizer, the trackers, the profiler): no
    # attribute of any hook is a hook or a container holding one. They talk through the trainer.
    from framework.process.distributed import DistContext
    from framework.run_context import RunContext
    from framework.runner.hooks import build_hooks
    from framework.runner.parts import build_parts
    from framework.training.hooks import Hook

    cfg = compose_config(
        ["pruner=agp_filter", "distill=kd", "regularizer=bn_l1", "tracking=none", "profile_steps=1", "epochs=2"]
    )
    parts = build_parts(cfg, RunContext(tmp_path / "run"))
    placed = build_hooks(cfg, parts, DistContext(rank=0, world_size=2))
    kinds = [type(p.hook).__name__ for p in placed]
    assert kinds == [
        "ConfigRecordHook",
        "DistillationHook",
        "LossTermHook",
        "PruningHook",
        "MaskSync",
        "ThinningHook",
        "DeployHook",
        "EpochLogHook",
        "TrackingHook",
        "CheckpointHook",
        "ProfilerHook",
    ]
    assert all(p.why and "\n" not in p.why for p in placed)  # a one-line reason per position

    def holds_a_hook(value, depth=0) -> bool:
        if isinstance(value, Hook):
            return True
        if depth > 2 or isinstance(value, str | bytes):
            return False
        if isinstance(value, dict):
            return any(holds_a_hook(v, depth + 1) for v in (*value.keys(), *value.values()))
        if isinstance(value, list | tuple | set | frozenset):
            return any(holds_a_hook(v, depth + 1) for v in value)
        inner = getattr(value, "__dict__", None)  # a plain object of ours (the trackers' group)
        return type(value).__module__.startswith("framework.") and inner is not None and holds_a_hook(inner, depth + 1)

    holding = [
        f"{type(p.hook).__name__}.{attribute}"
        for p in placed
        for attribute, value in vars(p.hook).items()
        if holds_a_hook(value)
    ]
    assert holding == []
    ranks_above_0 = [type(p.hook).__name__ for p in build_hooks(cfg, parts, DistContext(rank=1, world_size=2))]
    assert ranks_above_0 == kinds[:7]  # they train, prune and thin alike, but log, track and save nothing


# ----------------------------------------------------------------------------- the repository's text
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".cfg", ".txt", ".sh"}
# the opening and closing lines of a conflict (a bare "=======" may be a Markdown heading underline)
CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ")


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in listed.splitlines() if Path(name).suffix in TEXT_SUFFIXES]


def test_no_tracked_file_keeps_a_merge_conflict_marker():
    # A merge resolved in part once committed a whole "<<<<<<< / ======= / >>>>>>>" block into
    # BENCHMARKS.md; ruff catches one in Python, nothing caught one in the docs.
    marked = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _tracked_text_files()
        if path.is_file()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if line.startswith(CONFLICT_MARKERS)
    ]
    assert marked == []
