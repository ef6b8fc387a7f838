"""The README's Python snippets run as written, each in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.DOTALL | re.MULTILINE)


def test_the_readme_has_a_python_snippet():
    assert SNIPPETS, "README.md: no ```python block found"


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_a_readme_snippet_runs(snippet):
    # A subprocess: a fresh namespace and fresh torch state, as a reader pasting it would have.
    # One torch thread: the test shares the machine's cores with the rest of the suite.
    source = Path(__file__).resolve().parents[1] / "src"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")])),
    }
    code = "import torch\ntorch.set_num_threads(1)\n" + snippet
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
