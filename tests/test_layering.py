"""The package's shape: no import cycles, no long functions, light read-only modules.

Imports are read from the source (ast), anywhere in a module, function-level and
``if TYPE_CHECKING:`` blocks included, so neither a lazy import nor an annotations-only one
can hide a cycle. ``from pkg import submodule`` counts as an import of both ``pkg`` (it runs
``pkg/__init__.py``) and the submodule.
"""

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "benchsuite"
MAX_FUNCTION_LINES = 90
MAX_MODULE_LINES = 500


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
    api_names = _lazy_api_names(root)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == root.name and node.level == 0 \
                    and any(alias.name in api_names for alias in node.names):
                graph[name].add(f"{root.name}.api")  # `from benchsuite import run` imports the API
    for name in graph:
        # every submodule import runs the root package first: an edge to it says nothing more
        graph[name] -= {name, root.name}
    return graph


@functools.cache
def _package_edges() -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple((name, frozenset(targets)) for name, targets in import_graph().items())


def package_graph() -> dict[str, set[str]]:
    """``import_graph()`` of the package itself, parsed once per test process (a second or
    more; several tests read it and its files do not change while they run): a fresh copy."""
    return {name: set(targets) for name, targets in _package_edges()}


def _lazy_api_names(root: Path) -> set[str]:
    """The names the root package serves lazily from its ``api`` module (its ``_API``)."""
    init = root / "__init__.py"
    for node in ast.parse(init.read_text()).body if init.is_file() else ():
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_API" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


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
    assert cycles(package_graph()) == []


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


# Which package may import which: the architecture as a table. A package is a directory of
# benchsuite/ (or a shared top-level module); read it from the bottom up. Importing the root
# package itself is not an edge: importing any submodule runs it.
SHARED = {"errors", "formatting", "compat"}
MAY_IMPORT = {
    "errors": set(), "formatting": set(), "compat": set(),
    "plugins": set(),                      # the contract a method author reads
    "store": set(),                        # the results folder: records, table, files
    "stats": set(),                        # tests and estimates, on numbers only
    "tasks": {"plugins"},                  # task specs, data, models, the registry (asks plugins' hooks)
    "toolkit": {"plugins", "tasks"},       # helpers for methods: weights, reparametrizations
    "default_plugins": {"plugins", "toolkit"},
    "runs": {"plugins", "tasks", "store", "stats"},  # identity, matrices, tuning, sequential plans
    "execution": {"plugins", "tasks", "store", "toolkit", "default_plugins", "runs"},
    "report": {"plugins", "tasks", "store", "stats", "runs"},
    "testing": {"plugins", "tasks", "store", "toolkit", "default_plugins", "runs", "execution", "stats"},
    "api": {"plugins", "tasks", "store", "stats", "toolkit", "default_plugins", "runs", "execution", "report"},
    "cli": {"plugins", "tasks", "store", "stats", "toolkit", "default_plugins", "runs", "execution", "report",
            "api"},
    "__main__": {"cli"},
}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "benchsuite"


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        source = package_of(module)
        if source == "benchsuite":
            continue
        if source not in MAY_IMPORT:
            found.append(f"{module}: package {source!r} is not in the layering table")
            continue
        for target in sorted(targets):
            package = package_of(target)
            if package in {source, "benchsuite"} | SHARED or package in MAY_IMPORT[source]:
                continue
            found.append(f"{module} imports {target}: {source} may not import {package}")
    return found


def test_packages_import_only_the_layers_below_them():
    assert layering_violations(package_graph()) == []


def test_importing_the_api_from_the_root_package_is_an_import_of_the_api(tmp_path):
    package = tmp_path / "benchsuite"
    (package / "store").mkdir(parents=True)
    (package / "__init__.py").write_text('_API = ("run",)\n')
    (package / "api.py").write_text("")
    (package / "store" / "__init__.py").write_text("from benchsuite import run\n")
    graph = import_graph(package)
    assert graph["benchsuite.store"] == {"benchsuite.api"}
    assert layering_violations(graph) == [
        "benchsuite.store imports benchsuite.api: store may not import api"]


def test_the_layering_check_finds_an_upward_import():
    graph = {"benchsuite.store.folder": {"benchsuite.report.render"}, "benchsuite.report.render": set()}
    assert layering_violations(graph) == [
        "benchsuite.store.folder imports benchsuite.report.render: store may not import report"]


def test_every_package_is_in_the_table():
    packages = {package_of(m) for m in _modules()} - {"benchsuite"}
    assert packages == set(MAY_IMPORT)


def private_crossings(root: Path = PACKAGE) -> list[str]:
    """``from benchsuite.x import _name`` or ``module._name`` where the module belongs to
    another package: a private name used outside the package that owns it."""
    modules, found = _modules(root), []
    for name, path in sorted(modules.items()):
        own = package_of(name)
        aliases = {}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("benchsuite"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in modules:
                        aliases[alias.asname or alias.name] = full
                    elif alias.name.startswith("_") and not alias.name.startswith("__") \
                            and package_of(node.module) != own:
                        found.append(f"{name} imports {node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            target = aliases.get(node.value.id) if isinstance(node.value, ast.Name) else _dotted(node.value)
            if target in modules and package_of(target) != own:
                found.append(f"{name} uses {target}.{node.attr}")
    return sorted(set(found))


def _dotted(node) -> str | None:
    """``a.b.c`` for an attribute chain of names (``benchsuite.report.render``), else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def test_no_private_name_crosses_packages():
    assert private_crossings() == []


def test_the_private_name_check_finds_each_form(tmp_path):
    package = tmp_path / "benchsuite"
    for sub in ("store", "report"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "report" / "render.py").write_text("_hidden = 1\n")
    (package / "store" / "a.py").write_text("from benchsuite.report.render import _hidden\n")
    (package / "store" / "b.py").write_text("from benchsuite.report import render\nrender._hidden\n")
    (package / "store" / "c.py").write_text("import benchsuite.report.render\nbenchsuite.report.render._hidden\n")
    (package / "store" / "d.py").write_text("import benchsuite.report.render as r\nr._hidden\n")
    (package / "report" / "ok.py").write_text("from benchsuite.report import render\nrender._hidden\n")
    assert private_crossings(package) == [
        "benchsuite.store.a imports benchsuite.report.render._hidden",
        "benchsuite.store.b uses benchsuite.report.render._hidden",
        "benchsuite.store.c uses benchsuite.report.render._hidden",
        "benchsuite.store.d uses benchsuite.report.render._hidden"]


def test_no_relative_imports():
    """Every import names its module in full, as the checks above read them."""
    relative = [name for name, path in _modules().items()
                for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == []


def test_no_module_longer_than_the_limit():
    lengths = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    long = {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_longer_than_the_limit():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []


@pytest.mark.parametrize("module", ["benchsuite", "benchsuite.report.summary", "benchsuite.formatting",
                                    "benchsuite.report.analysis", "benchsuite.report.render", "benchsuite.store",
                                    "benchsuite.plugins", "benchsuite.stats", "benchsuite.runs.matrix"])
def test_read_only_layers_do_not_import_torch_or_the_engine(module):
    probe = (f"import sys, {module}; "
             "print(sorted(m for m in ('torch', 'benchsuite.execution.engine') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


HEAVY = ("torch", "torchvision", "timm")
READ_ONLY_COMMAND_MODULES = ("benchsuite.report.publish", "benchsuite.report.claims", "benchsuite.runs.identity",
                             "benchsuite.runs.matrix", "benchsuite.store", "benchsuite.report.summary",
                             "benchsuite.report.analysis", "benchsuite.report.render", "benchsuite.plugins",
                             "benchsuite.tasks", "benchsuite.tasks.real_data")
TRAINING_MODULES = {"benchsuite.execution.engine", "benchsuite.execution.pool", "benchsuite.toolkit.training",
                    "benchsuite.execution.hooks"}


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
    graph, modules = package_graph(), _modules()
    reach, todo = {module}, [module]
    while todo:
        for target in graph[todo.pop()] - reach:
            reach.add(target)
            todo.append(target)
    assert not reach & TRAINING_MODULES
    assert sorted(m for m in reach if _imports_heavy_at_load(modules[m])) == []


ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def documented_modules(text: str) -> set[str]:
    """``package/module.py`` (or ``module.py`` at the top) of every module the package tree
    in docs/architecture.md lists: a ``name/`` line opens a subpackage, names in the first
    column (``a.py, b.py``) are its modules."""
    tree = text.split("```")[1]
    found, package = set(), ""
    for line in tree.splitlines():
        entry = line[:33].strip()
        if not entry or entry in {"benchsuite/"} or not line.startswith("  "):
            continue
        if entry.endswith("/"):
            package = entry if line.startswith("  ") and not line.startswith("    ") else package
            continue
        for name in entry.split(", "):
            found.add((package if line.startswith("    ") else "") + name)
    return found


def test_the_architecture_page_lists_every_module():
    actual = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")}
    actual |= {f"{p.relative_to(PACKAGE)}/" for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    listed = documented_modules(ARCHITECTURE.read_text())
    listed |= {line[:33].strip() for line in ARCHITECTURE.read_text().split("```")[1].splitlines()
               if line.startswith("  ") and not line.startswith("    ") and line[:33].strip().endswith("/")}
    package_inits = {m for m in actual if m.endswith("/__init__.py")}
    # a subpackage's __init__ may go unlisted when the package line says what it holds
    assert listed - actual == set()
    assert actual - listed - package_inits == set()


def test_the_architecture_page_shows_the_layering_table():
    rows = re.findall(r"^\| `(\w+)` \| (.+) \|$", ARCHITECTURE.read_text(), re.M)
    shown = {package: set(re.findall(r"`(\w+)`", allowed)) for package, allowed in rows}
    assert shown == {package: allowed for package, allowed in MAY_IMPORT.items() if package not in SHARED}
