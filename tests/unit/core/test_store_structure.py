"""The store stays a small facade over one module per concern (issue 25): no module of
controller/store over 450 lines, JobStore with at most 20 public methods, and no import
cycle between the store's modules."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from qforge.store.jobstore import JobStore

STORE = Path(__file__).parents[3] / "controller" / "store"
IMPORT = re.compile(r"^from qforge\.store(?:\.(\w+))? import (\w+)", re.M)


def _imports() -> dict[str, set[str]]:
    mods = {p.stem: p for p in STORE.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = {sub or what for sub, what in IMPORT.findall(path.read_text())}
        graph[name] = {d for d in deps if d in mods}
    return graph


def test_no_store_module_is_over_450_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in STORE.glob("*.py")}
    assert sizes and max(sizes.values()) <= 450, sizes


def test_the_facade_has_at_most_20_public_methods() -> None:
    public = [n for n, v in inspect.getmembers(JobStore, inspect.isfunction)
              if not n.startswith("_")]
    assert len(public) <= 20, public


def test_no_import_cycle_in_the_store() -> None:
    graph = _imports()
    assert graph["jobstore"] >= {"queue", "records", "queries", "groups", "dedup"}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, (*path, node))
        done.add(node)

    for node in sorted(graph):
        visit(node, ())
