"""What a model reference is fingerprinted by: its file and the local modules it imports."""

from __future__ import annotations

import textwrap

from normlab.train.model_files import local_modules, model_files, model_fingerprint


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_a_file_model_covers_the_local_modules_it_imports(tmp_path):
    net = write(
        tmp_path / "net.py",
        """
        import os
        import torch
        from layers import block
        import pkg.sub
        from pkg import other
        from pkg.deep import inner
        def make_net():
            return None
        """,
    )
    layers = write(tmp_path / "layers.py", "from helpers import WIDTH\n")
    helpers = write(tmp_path / "helpers.py", "WIDTH = 4\n")
    init = write(tmp_path / "pkg" / "__init__.py", "")
    sub = write(tmp_path / "pkg" / "sub.py", "from . import sibling\n")
    sibling = write(tmp_path / "pkg" / "sibling.py", "")
    other = write(tmp_path / "pkg" / "other.py", "from .deep.inner import X\n")
    deep_init = write(tmp_path / "pkg" / "deep" / "__init__.py", "")
    inner = write(tmp_path / "pkg" / "deep" / "inner.py", "from ..sibling import Y\n")
    write(tmp_path / "unused.py", "")  # in the folder, not imported: not covered
    expected = {net, layers, helpers, init, sub, sibling, other, deep_init, inner}
    assert set(local_modules(net.resolve())) == {p.resolve() for p in expected}
    records = model_files(f"{net}:make_net")
    assert [r[0] for r in records] == sorted(str(p.resolve()) for p in expected)


def test_the_fingerprint_changes_with_an_imported_module_only_when_it_changes(tmp_path):
    net = write(tmp_path / "net.py", "from layers import WIDTH\n")
    layers = write(tmp_path / "layers.py", "WIDTH = 4\n")
    ref = f"{net}:make_net"
    first = model_fingerprint(model_files(ref))
    assert len(first) == 16 and model_fingerprint(model_files(ref)) == first
    layers.write_text("WIDTH = 8\n")
    assert model_fingerprint(model_files(ref)) != first


def test_built_in_and_installed_models(tmp_path):
    assert model_files("resnet") == () and model_fingerprint(()) == ""
    records = model_files("click.testing:CliRunner")
    paths = [r[0] for r in records]
    assert paths[0].endswith("click/testing.py")
    assert any(p.startswith("click==") for p in paths)  # the package version
    assert model_fingerprint(records)
