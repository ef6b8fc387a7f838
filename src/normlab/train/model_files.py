"""What a model reference's results depend on, as file records: resuming on a changed model is
refused exactly as on changed data (``data/fingerprint.py``).

- A built-in name: nothing (``()``); the registry name and normlab's code identify it.
- ``path/to/file.py:factory``: the file, and every ``.py`` file of its own folder (modules and
  packages below it) that it imports with an ``import`` or ``from ... import`` statement, found by
  reading the source (nothing is executed), transitively. Not covered: imports made at run time
  (``importlib``, ``__import__``, ``exec``), modules outside the file's folder (installed
  packages), and files the factory reads (weights, configs). The records are keyed on the
  reference's file, whatever the factory returns (a ``torch`` or a converted model).
- ``pkg.module:factory``: the installed module's file and the version of the distribution that
  provides it (a record ``<distribution>==<version>``); not the package's other modules.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from normlab.data.fingerprint import FINGERPRINT_LENGTH, FileRecord, data_fingerprint, file_record
from normlab.models import MODELS

from .model_ref import _is_file, _split

MAX_LOCAL_MODULES = 1000
"""Local modules followed at most (a folder of generated code should not stall planning)."""


def model_files(ref: str) -> tuple[FileRecord, ...]:
    """(path, size, sha256) of what ``ref``'s model is built from, sorted; ``()`` for built-ins."""
    if ref in MODELS:
        return ()
    target, _ = _split(ref)
    if _is_file(target):
        path = Path(target).expanduser().resolve()
        return tuple(sorted(file_record(p) for p in local_modules(path)))
    return _installed_module(ref, target)


def model_fingerprint(files: Sequence[Sequence[object]]) -> str:
    """Short hash of :func:`model_files`' records (``""`` for none): files by their path relative
    to the folder holding them all, as for data files, and package versions as they are."""
    paths = [(str(p), int(s), str(h)) for p, s, h in files if os.path.isabs(str(p))]  # type: ignore[call-overload]
    versions = sorted(f"{p}\t{h}" for p, _, h in files if not os.path.isabs(str(p)))
    lines = [data_fingerprint(paths), *versions] if paths else versions
    if not lines:
        return ""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:FINGERPRINT_LENGTH]


def local_modules(path: Path) -> list[Path]:
    """``path`` and the ``.py`` files of its folder it imports, transitively (see the module
    docstring for what is not followed)."""
    root = path.parent
    found: list[Path] = []
    queue = [path]
    while queue and len(found) < MAX_LOCAL_MODULES:
        current = queue.pop()
        if current in found or not current.is_file():
            continue
        found.append(current)
        try:
            tree = ast.parse(current.read_bytes(), filename=str(current))
        except (SyntaxError, ValueError, OSError):
            continue  # loading the model reports it; the file itself is still covered
        for name in _imported_names(tree, current, root):
            queue.extend(_local_files(root, name))
    return found


def _imported_names(tree: ast.AST, current: Path, root: Path) -> list[str]:
    """Dotted module names ``tree`` imports, relative imports resolved against ``root``
    (``from . import x`` in ``root/pkg/mod.py`` is ``pkg.x``); both ``from a import b`` forms
    (``a`` and ``a.b``) are listed, since ``b`` may be a submodule."""
    package = list(current.parent.relative_to(root).parts) if current.parent != root else []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                if node.level - 1 > len(package):
                    continue
                parts = [*base, *(node.module.split(".") if node.module else [])]
            else:
                parts = node.module.split(".") if node.module else []
            if parts:
                names.append(".".join(parts))
            names.extend(".".join([*parts, alias.name]) for alias in node.names)
    return names


def _local_files(root: Path, dotted: str) -> list[Path]:
    """The files of ``root`` that importing ``dotted`` executes: each package's ``__init__.py``
    on the way and the module itself."""
    files = []
    folder = root
    for part in dotted.split("."):
        if not part.isidentifier():
            return files
        module = folder / f"{part}.py"
        package = folder / part / "__init__.py"
        if module.is_file():
            files.append(module)
            break
        if not package.is_file():
            break
        files.append(package)
        folder = folder / part
    return [f.resolve() for f in files]


def _installed_module(ref: str, target: str) -> tuple[FileRecord, ...]:
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return ()  # loading the model names the problem; nothing to fingerprint
    records = [file_record(spec.origin)]
    top = target.split(".")[0]
    for distribution in importlib.metadata.packages_distributions().get(top, []):
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
        digest = hashlib.sha256(version.encode()).hexdigest()
        records.append((f"{distribution}=={version}", 0, digest))
    return tuple(sorted(records))
