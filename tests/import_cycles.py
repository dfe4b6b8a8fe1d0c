"""The import graph of ``framework/`` read with ``ast`` (nothing is imported), and its cycles.

Every ``import`` / ``from ... import`` counts, at module level or inside a function: a lazy import
that only dodges a cycle is still a cycle. Imports under ``if TYPE_CHECKING:`` never run, so they
count only with ``type_checking=True`` (``--type-checking``). ``from package import name`` is an
edge to ``package.name`` when that is a module, else to the package. Run
``python tests/import_cycles.py [--type-checking]`` to print the cycles (exit 1 when there is one).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_files(package: str = "framework", root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of ``package`` (``__init__`` as the package)."""
    files = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(test):
            inside.update(id(child) for statement in node.body for child in ast.walk(statement))
    return inside


def import_graph(package: str = "framework", root: Path = ROOT, type_checking: bool = False) -> dict[str, set[str]]:
    """``{module: modules of package it imports}``."""
    files = module_files(package, root)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skipped = set() if type_checking else _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, name, path.name == "__init__.py")
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names]
            for target in targets:
                while target and target not in files:  # import a.b.c of a module a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (each holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


if __name__ == "__main__":
    found = cycles(import_graph(type_checking="--type-checking" in sys.argv[1:]))
    for component in found:
        print("cycle among: " + ", ".join(component))
    print(f"{len(found)} import cycle(s) in framework/")
    sys.exit(1 if found else 0)
