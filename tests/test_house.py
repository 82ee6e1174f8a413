"""The house rules of imnet_data/ that no linter checks: an import graph without cycles, modules of 400 lines at most.

What counts as an import of module M by module A: ``import M`` and ``from M import x`` anywhere in A (at module
level, inside functions, under ``if TYPE_CHECKING:``), relative imports resolved; ``from P import x`` also imports
``P.x`` when that is a module. ``from P import x`` reads package P's ``__init__``, so a submodule that takes a name
(a submodule included) from its own package, whose ``__init__`` imports it back, is a cycle: run first, it would
find the package half-initialised.
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

MAX_LINES = 400   # the rule: a module past it is split by what its parts do


def module_name(path: Path, root: Path) -> str:
    """``pkg/sub/mod.py`` -> ``pkg.sub.mod``, ``pkg/sub/__init__.py`` -> ``pkg.sub``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (the file ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]) if node.level else ""
            source = ".".join(part for part in (base, node.module) if part)
            found |= {source} | {f"{source}.{alias.name}" for alias in node.names}
    return (found & modules) - {name}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Each module of ``package`` (a folder under ``root``) -> the modules of the package it imports."""
    paths = {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}
    return {name: imported(name, path, set(paths)) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import cycle of ``graph`` as its modules in order, the first repeated at the end, or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        for target in sorted(graph[name]):
            if cycle := visit(target, [*path, name]):
                return cycle
        done.add(name)
        return None

    return next((cycle for name in sorted(graph) if (cycle := visit(name, []))), None)


def test_imnet_data_has_no_import_cycle():
    graph = import_graph(ROOT, "imnet_data")
    assert "imnet_data.sources.devkit" in graph["imnet_data.sources.folders"]   # the graph sees the imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_import_graph_finds_a_package_and_its_submodule_importing_each_other(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.sub.reader import read\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "reader.py").write_text("def read():\n    from .. import helper\n")
    (package / "helper.py").write_text("from . import sub\n")
    (package / "plain.py").write_text("import os\nimport pkg.helper\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.sub.reader"}, "pkg.helper": {"pkg", "pkg.sub"}, "pkg.plain": {"pkg.helper"},
                     "pkg.sub": set(), "pkg.sub.reader": {"pkg", "pkg.helper"}}
    assert find_cycle(graph) == ["pkg", "pkg.sub.reader", "pkg"]
    (package / "sub" / "reader.py").write_text("def read():\n    from pkg.helper import x\n")
    (package / "helper.py").write_text("x = 1\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


def test_no_module_of_imnet_data_is_over_400_lines():
    lengths = {path.relative_to(ROOT): len(path.read_bytes().splitlines())
               for path in sorted((ROOT / "imnet_data").rglob("*.py"))}
    assert len(lengths) > 50 and max(lengths.values()) > 100
    over = [f"{path}: {n} lines" for path, n in lengths.items() if n > MAX_LINES]
    assert not over, f"over {MAX_LINES} lines (split it by what its parts do): " + ", ".join(over)
