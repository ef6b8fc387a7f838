"""A Keras model through the CLI: a quick study and the doctor on a converted Keras factory."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from normlab.cli import main

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("keras")

REF = f"{Path(__file__).with_name('keras_models.py')}:tiny_writeup"


def test_quick_study_on_a_keras_model_swaps_its_batch_norms_and_records_keras(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "--quick", "--model", REF, "--max-train", "64", "--max-eval", "64"]
    assert main([*args, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    with sqlite3.connect(out / "normlab.db") as db:
        rows = db.execute("SELECT config, status FROM runs").fetchall()
    configs = [json.loads(config) for config, _ in rows]
    assert len(rows) == 32 and {status for _, status in rows} <= {"done", "diverged"}
    assert {c["model_format"] for c in configs} == {"keras"}
    assert {c["norm"] for c in configs} == {"bn", "none", "ln", "gn"}
    assert "Recommendation:" in (out / "report.md").read_text()


def test_doctor_examines_a_converted_keras_model(capsys):
    assert main(["doctor", "--model", REF, "--batch-size", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == REF and isinstance(report["findings"], list)
