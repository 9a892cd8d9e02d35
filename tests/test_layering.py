"""The package's shape: no import cycles, no long functions, light read-only modules.

Imports are read from the source (ast), anywhere in a module, function-level and
``if TYPE_CHECKING:`` blocks included, so neither a lazy import nor an annotations-only one
can hide a cycle. ``from pkg import submodule`` counts as an import of both ``pkg`` (it runs
``pkg/__init__.py``) and the submodule.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "benchsuite"
MAX_FUNCTION_LINES = 90


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of ``root`` (a package folder) it imports."""
    modules = _modules(root)
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parent + ([node.module] if node.module else []))
                if base in modules:
                    graph[name].add(base)
                graph[name] |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
    for name in graph:
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lazy_and_annotation_only_imports_count(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.b import B\n")
    (package / "sub" / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\nB = 1\n")
    graph = import_graph(package)
    assert graph["pkg.sub.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.sub.a"}
    assert cycles(graph) == [["pkg.sub", "pkg.sub.a", "pkg.sub.b"]]


def test_reporting_layers_point_one_way():
    graph = import_graph()
    below_render = ("benchsuite.formatting", "benchsuite.summary", "benchsuite.analysis", "benchsuite.stats")
    for module in below_render:
        assert not graph[module] & {"benchsuite.render", "benchsuite.publish", "benchsuite.claims"}, module
    assert "benchsuite.publish" not in set().union(*(graph[m] for m in graph if m != "benchsuite.cli"))


def test_no_function_longer_than_the_limit():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []


@pytest.mark.parametrize("module", ["benchsuite.summary", "benchsuite.formatting", "benchsuite.analysis",
                                    "benchsuite.render", "benchsuite.store", "benchsuite.plugins"])
def test_read_only_layers_do_not_import_torch_or_the_engine(module):
    probe = f"import sys, {module}; print(sorted(m for m in ('torch', 'benchsuite.engine') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


HEAVY = ("torch", "torchvision", "timm")
READ_ONLY_COMMAND_MODULES = ("benchsuite.publish", "benchsuite.claims", "benchsuite.identity", "benchsuite.matrix",
                             "benchsuite.store", "benchsuite.summary", "benchsuite.analysis", "benchsuite.render",
                             "benchsuite.plugins", "benchsuite.tasks", "benchsuite.tasks.real_data")


def _imports_heavy_at_load(path: Path) -> bool:
    """An ``import torch`` (torchvision, timm) that runs when the module loads: at its top
    level, not inside a function or an ``if TYPE_CHECKING:`` block."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in HEAVY for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in HEAVY:
            return True
    return False


@pytest.mark.parametrize("module", READ_ONLY_COMMAND_MODULES)
def test_what_the_read_only_commands_can_reach_loads_no_torch_and_no_engine(module):
    """Everything ``results``, ``report``, ``leaderboard``, ``plugins`` and ``tasks`` can
    import, lazily or not: never the engine, and no module that imports torch as it loads
    (installed plugins' own modules are theirs to keep light)."""
    graph, modules = import_graph(), _modules()
    reach, todo = {module}, [module]
    while todo:
        for target in graph[todo.pop()] - reach:
            reach.add(target)
            todo.append(target)
    assert not reach & {"benchsuite.engine", "benchsuite.executors", "benchsuite.training", "benchsuite.hooks"}
    assert sorted(m for m in reach if _imports_heavy_at_load(modules[m])) == []
