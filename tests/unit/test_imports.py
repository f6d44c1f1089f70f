"""The layering bench/ARCHITECTURE.md describes, read from the source: every import (module level or inside a
function) goes down the layers, never up, and no modules import each other in a cycle. The oracle is Python's
own parser (``ast``) over the files, not the modules' idea of themselves."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BENCH_LAYERS = (
    ("kernels",),
    ("bench.runtime", "analysis"),
    ("bench.workload",),
    ("bench.measure",),
    ("bench.comm",),
    ("bench.compress",),
    ("bench.strategies",),
    ("bench.config",),
    ("bench.run", "bench.setup"),
    ("bench.cli", "bench.micro", "bench.sweep", "bench.train", "bench.info", "bench.perf", "bench.__main__", "bench"),
)
"""Bottom first; a group imports only from its own or a lower line."""

ANALYSIS_LAYERS = ("data", "stats", "models", "views", "figures", "report", "__main__")
"""analysis/'s subpackages, bottom first: data access, statistics, cost models, tables, figures, the commands."""


def module_files() -> dict[str, Path]:
    found = {}
    for top in ("analysis", "bench", "kernels"):
        for path in (ROOT / top).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports anywhere in its file (``from pkg import mod`` counts as mod)."""
    modules = module_files()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = stack[stack.index(node) :]
                    del stack[stack.index(node) :]
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return found


def layer_of(module: str) -> int:
    for level, groups in enumerate(BENCH_LAYERS):
        if any(module == g or module.startswith(g + ".") for g in groups if g != "bench") or module == "bench":
            return level
    raise AssertionError(f"{module}: in no layer of BENCH_LAYERS (add it where it belongs)")


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


def test_every_import_goes_down_the_layers():
    upward = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_analysis_subpackages_import_downward_and_nothing_of_bench():
    graph = import_graph()
    rank = {name: level for level, name in enumerate(ANALYSIS_LAYERS)}
    wrong = defaultdict(list)
    for module, targets in graph.items():
        if not module.startswith("analysis."):
            continue
        for target in targets:
            if target.startswith("bench"):
                wrong["imports bench"].append(f"{module} -> {target}")
            elif target.startswith("analysis.") and rank[target.split(".")[1]] > rank[module.split(".")[1]]:
                wrong["upward"].append(f"{module} -> {target}")
    assert dict(wrong) == {}
