"""The layering of normlab holds without anyone remembering it.

Every module under ``src/normlab`` is parsed with :mod:`ast` (nothing is imported or executed)
and each of its imports of another normlab module becomes an edge. Two rules:

1. A module imports only what its top-level subpackage may import (:data:`LAYERS`, described in
   ``docs/ARCHITECTURE.md``): a module of a lower layer never imports a higher one.
2. No import cycle between modules of the package.

Both rules count every import statement wherever it is: inside a function (a "lazy" import) or
under ``if TYPE_CHECKING:``. A lazy import is still a dependency, paid at call time instead of
import time; using one to get past a circle hides the circle without breaking it, and the two
modules still cannot be read, tested or changed one without the other.

Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``; those implicit parent
imports are not edges (every module of a package would otherwise depend on the package's
public facade, ``normlab/__init__.py``, which re-exports from the layers below).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

# The layer map: the one place it is written down (docs/ARCHITECTURE.md describes it).
# Top to bottom; a module may import the layers below its own. A module's layer is that of its
# top-level subpackage or module (normlab.train.packed -> "train", normlab.cli -> "cli"), so a
# new module of an existing subpackage fits without editing this map; a new top-level one fails
# test_every_module_has_a_layer until it is placed here.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("commands",),  # one module per CLI command beyond the core ones; cli.py registers them
    ("normlab",),  # the package's own __init__: the public Python API, re-exported from below
    ("study", "analysis", "report", "diagnostics"),
    ("train",),
    ("keras",),  # Keras models converted to torch modules; train's model_ref converts with it
    ("models", "surgery", "norm_tail"),
    ("norms",),
)
SAME_LAYER: dict[str, tuple[str, ...]] = {
    "report": ("analysis",),  # a report renders the analysis of plain records
    # studies run diagnostics after training (the store keeps them); the adaptive protocol's
    # rounds ask the analysis which comparisons are still open (pure functions of records)
    "study": ("diagnostics", "analysis"),
    "surgery": ("norm_tail",),  # what a BatchNorm subclass does beyond normalizing, for swaps
}
"""Imports allowed between packages of one layer (any other is a violation)."""
DATA_USERS = ("train", "study", "diagnostics", "commands", "cli")
"""``data`` stands apart: these may import it (and what may import them, transitively, need not)."""
OUTSIDE: dict[str, tuple[str, ...]] = {
    "data": ("errors", "norms.errors"),
    "errors": ("norms.errors",),  # NormlabError lives in norms, which imports nothing of normlab
    "norms": (),
}
"""What the packages outside the layered stack may import (``norms`` is the bottom layer)."""


PLACED = {name for layer in LAYERS for name in layer} | set(OUTSIDE)


def may_import(package: str) -> tuple[str, ...]:
    """The packages (or dotted modules, relative to normlab) that ``package``'s modules may import."""
    if package in OUTSIDE:
        return OUTSIDE[package]
    level = next(i for i, layer in enumerate(LAYERS) if package in layer)
    below = [name for layer in LAYERS[level + 1 :] for name in layer]
    if package in DATA_USERS:
        below.append("data")
    return (*below, *SAME_LAYER.get(package, ()), "errors")


@dataclass(frozen=True)
class Import:
    """One import of a package module by another, where it is written."""

    source: str
    """Importing module (``normlab.study.spec``)."""
    target: str
    """Imported module (``normlab.train``)."""
    where: str
    """``src/normlab/study/spec.py:84``."""


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``root``."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(root: Path, package: str) -> list[Import]:
    """Every import of one module of ``package`` by another, from the source text alone."""
    known = modules(root, package)
    edges = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, is_package)
                # ``from pkg import mod`` imports the module pkg.mod when there is one.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            else:
                continue
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            for target in targets:
                resolved = _longest_known(target, known)
                if resolved is not None and resolved != name:
                    edges.append(Import(name, resolved, where))
    return edges


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _longest_known(target: str, known: dict[str, Path]) -> str | None:
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def top_level(module: str) -> str:
    """A module's layer name: ``normlab.train.packed`` -> ``train``; the root -> ``normlab``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(edges: list[Import]) -> list[str]:
    """Each import a module's layer does not allow, as ``file:line: who imports what``."""
    problems = []
    for edge in edges:
        source, target = top_level(edge.source), top_level(edge.target)
        if source == target or source == "cli" or source not in PLACED:
            continue  # an unplaced package fails test_every_module_has_a_layer
        relative = edge.target.split(".", 1)[1] if "." in edge.target else edge.target
        allowed = may_import(source)
        if not any(relative == a or relative.startswith(f"{a}.") for a in allowed):
            problems.append(
                f"{edge.where}: {edge.source} imports {edge.target}, but {source} may import "
                f"only: {', '.join(allowed) or 'nothing of normlab'}"
            )
    return problems


def cycles(edges: list[Import]) -> list[str]:
    """Each import cycle (one per strongly connected group), its imports as ``file:line``."""
    graph: dict[str, dict[str, str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, {}).setdefault(edge.target, edge.where)
    reported, found = set(), []
    for start in sorted(graph):
        path = _cycle_from(start, graph)
        if path is None or frozenset(path) in reported:
            continue
        reported.add(frozenset(path))
        steps = [
            f"{a} -> {b} ({graph[a][b]})" for a, b in zip(path, [*path[1:], path[0]], strict=True)
        ]
        found.append("import cycle: " + "; ".join(steps))
    return found


def _cycle_from(start: str, graph: dict[str, dict[str, str]]) -> list[str] | None:
    """The shortest import path from ``start`` back to itself (breadth first), or None."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in graph.get(node, {}):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return path[::-1]
                if target not in parents:
                    parents[target] = node
                    following.append(target)
        frontier = following
    return None


# -- the package ---------------------------------------------------------------------------------
EDGES = imports(SOURCE, "normlab")


def test_every_module_has_a_layer():
    unplaced = sorted({top_level(m) for m in modules(SOURCE, "normlab")} - PLACED)
    assert not unplaced, f"place these in tests/test_layering.py LAYERS: {', '.join(unplaced)}"


def test_no_module_imports_a_higher_layer():
    problems = layer_violations(EDGES)
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    found = cycles(EDGES)
    assert not found, "\n".join(found)


def test_the_package_is_read():
    # Guards the two tests above against passing vacuously (a wrong path, a broken resolver).
    pairs = {(e.source, e.target) for e in EDGES}
    assert ("normlab.study.parse", "normlab.study.spec") in pairs
    assert ("normlab.errors", "normlab.norms.errors") in pairs
    assert ("normlab.study.executors", "normlab.study.ray_executor") in pairs


# -- the checker on a package made to fail ------------------------------------------------------
@pytest.fixture
def bad_package(tmp_path: Path) -> Path:
    files = {
        "pkg/__init__.py": "",
        "pkg/norms/__init__.py": "from pkg.train import engine\n",
        "pkg/train/__init__.py": "",
        "pkg/train/engine.py": "import os\n\n\ndef build():\n    from . import loop\n",
        "pkg/train/loop.py": "from pkg.train.engine import build\n",
        "pkg/study/spec.py": "from .parse import parse\n",
        "pkg/study/parse.py": "from ..study import spec\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_a_lower_layer_importing_a_higher_one_is_named_with_file_and_line(bad_package):
    (problem,) = layer_violations(imports(bad_package, "pkg"))
    assert problem.startswith(f"{bad_package.name}/pkg/norms/__init__.py:1: pkg.norms imports")
    assert "pkg.train.engine" in problem and "norms may import only: nothing of normlab" in problem


def test_cycles_are_found_through_lazy_and_relative_imports(bad_package):
    found = cycles(imports(bad_package, "pkg"))
    assert sorted(found) == [
        "import cycle: pkg.study.parse -> pkg.study.spec "
        f"({bad_package.name}/pkg/study/parse.py:1); pkg.study.spec -> pkg.study.parse "
        f"({bad_package.name}/pkg/study/spec.py:1)",
        "import cycle: pkg.train.engine -> pkg.train.loop "
        f"({bad_package.name}/pkg/train/engine.py:5); pkg.train.loop -> pkg.train.engine "
        f"({bad_package.name}/pkg/train/loop.py:1)",
    ]


@pytest.mark.parametrize(
    ("package", "allowed", "refused"),
    [
        ("diagnostics", ("train", "surgery", "data"), ("study", "report", "cli")),
        ("report", ("analysis", "train"), ("study", "diagnostics", "data", "cli")),
        ("models", ("norms", "errors"), ("data", "surgery", "train")),
        ("data", ("errors", "norms.errors"), ("norms", "train")),
        ("keras", ("models", "norms", "errors"), ("train", "data", "study")),
        ("train", ("keras", "models"), ("study",)),
    ],
)
def test_the_layer_map(package, allowed, refused):
    permitted = may_import(package)
    assert all(name in permitted for name in allowed)
    assert not any(name in permitted for name in refused)
