"""The optional extra and its backend (keras/backend.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from normlab.keras.backend import missing_keras

SOURCE = Path(__file__).resolve().parents[2] / "src"


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    environment |= {"PYTHONPATH": str(SOURCE), **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300
    )


def test_importing_normlab_does_not_import_keras():
    code = "import sys, normlab.cli, normlab.keras; assert 'keras' not in sys.modules"
    result = run(code)
    assert result.returncode == 0, result.stderr


def test_the_torch_backend_is_chosen_only_when_none_is_set():
    code = (
        "import os; from normlab.keras import prefer_torch_backend; prefer_torch_backend(); "
        "print(os.environ['KERAS_BACKEND'])"
    )
    assert run(code).stdout.strip() == "torch"
    assert run(code, KERAS_BACKEND="jax").stdout.strip() == "jax"


def test_a_missing_keras_or_backend_is_recognized():
    assert missing_keras(ModuleNotFoundError("No module named 'keras'", name="keras"))
    assert missing_keras(ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow"))
    assert not missing_keras(ModuleNotFoundError("No module named 'timm'", name="timm"))
    assert not missing_keras(ValueError("keras"))
