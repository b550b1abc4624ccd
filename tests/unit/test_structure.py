"""The shape of controller/ (issue 25): its subpackages import each other without a
cycle (docs/development.md draws the graph), no module is over 450 lines, no class has
more than 20 public methods. Imports are read from the source (module level and inside
functions alike), so an import hidden in a function still counts."""

from __future__ import annotations

import ast
from pathlib import Path

CONTROLLER = Path(__file__).resolve().parents[2] / "controller"
MAX_LINES = 450
MAX_PUBLIC_METHODS = 20

# Exceptions to the limits, by path (none now: the store, the scheduling core and the
# Kubernetes executor were split in issue 25). Anything listed must say why.
LONG_MODULES: set[str] = set()
BIG_CLASSES: set[str] = set()


def _modules() -> list[Path]:
    return sorted(CONTROLLER.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(CONTROLLER.parent).as_posix()


def _node(path: Path) -> str:
    """A file's place in the graph: its subpackage (qforge.<sub>), or the top-level
    module itself (qforge.record, qforge.settings, ...; qforge/__init__.py is `qforge`)."""
    parts = path.relative_to(CONTROLLER).parts
    if len(parts) > 1:
        return parts[0]
    name = parts[0].removesuffix(".py")
    return "qforge" if name == "__init__" else name


def _targets(tree: ast.AST) -> set[str]:
    """The qforge.<sub> names a module imports, wherever in it the import stands."""
    found: set[str] = set()
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "qforge":
                modules = [f"qforge.{alias.name}" for alias in node.names]
            elif node.module.startswith("qforge."):
                modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names if a.name.startswith("qforge.")]
        found.update(m.split(".")[1] for m in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _modules():
        source = _node(path)
        edges = graph.setdefault(source, set())
        edges.update(t for t in _targets(ast.parse(path.read_text())) if t != source)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as its nodes in order (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_subpackage_imports_have_no_cycle() -> None:
    graph = import_graph()
    assert {"cli", "client", "server", "service", "store"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "controller/ subpackages import in a circle: " + " -> ".join(cycle)


def test_no_module_over_450_lines() -> None:
    long = {
        _rel(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert set(long) - LONG_MODULES == set(), f"modules over {MAX_LINES} lines: {long}"


def _public_methods(cls: ast.ClassDef) -> list[str]:
    return [
        item.name for item in cls.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        and not item.name.startswith("_")
    ]


def test_no_class_over_20_public_methods() -> None:
    big: dict[str, int] = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                count = len(_public_methods(node))
                if count > MAX_PUBLIC_METHODS:
                    big[f"{_rel(path)}:{node.name}"] = count
    assert set(big) - BIG_CLASSES == set(), (
        f"classes with over {MAX_PUBLIC_METHODS} public methods: {big}"
    )
