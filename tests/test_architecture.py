"""The import graph of the package: no cycles, and the core never reaches into the method folders.

Every ``import`` statement counts, function-level ones included: an import deferred into a function still ties
the two modules together. Imports under ``if TYPE_CHECKING:`` do not (they never run: annotations only).
``mtpt.registry`` finds the method folders at run time (``importlib``), which is the one sanctioned way from the
core to the methods.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mtpt

PACKAGE_ROOT = Path(mtpt.__file__).parent
CORE = ("mtpt.model", "mtpt.runtime", "mtpt.config", "mtpt.contract", "mtpt.registry", "mtpt.training",
        "mtpt.library", "mtpt.runs", "mtpt.checkpoints", "mtpt.prerequisites")
"""Modules (and packages) that must not import from ``mtpt.methods``."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The mtpt modules ``name`` imports (each ``from X import y`` counts as X, or X.y when that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    return {m for m in found if m in known and m != name}


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported(name, path, known) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_never_imports_a_method_folder():
    graph = import_graph()
    offenders = {name: sorted(m for m in targets if m.startswith("mtpt.methods"))
                 for name, targets in graph.items()
                 if any(name == core or name.startswith(core + ".") for core in CORE)}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "mtpt.tiny_models" in graph["mtpt.backbones"]  # a function-level import
    assert "mtpt.tasks.kshot" in graph["mtpt.tasks.base"]  # a relative import
