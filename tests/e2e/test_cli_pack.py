"""CLI: --pack, --device, packing in --dry-run, and `normlab bench`."""

from __future__ import annotations

import json
import sqlite3

import pytest

from normlab.cli import main

SPEC = """
[study]
name = "pack cli"
seeds = [0, 1]

[run]
dataset = "synthetic"
dataset_options = { num_examples = 200, num_classes = 4, size = 8, noise = 0.8 }
widths = [4, 8, 8]
batch_size = 8
steps = 6

[factors]
norm = ["bn", "ln"]

[lr]
mode = "fixed"
base_lr = 0.02
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return path


def pack_sizes(out):
    with sqlite3.connect(out / "normlab.db") as db:
        return sorted(row[0] for row in db.execute("SELECT pack_size FROM runs"))


def test_study_packs_by_default_and_not_with_pack_off(spec_file, tmp_path):
    args = ["study", str(spec_file), "--workers", "1", "--threads", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "auto")]) == 0
    assert pack_sizes(tmp_path / "auto") == [2, 2, 2, 2]
    assert main([*args, "--out", str(tmp_path / "off"), "--pack", "off", "--device", "cpu"]) == 0
    assert pack_sizes(tmp_path / "off") == [1, 1, 1, 1]


def test_packed_study_with_two_workers(spec_file, tmp_path):
    args = ["study", str(spec_file), "--workers", "2", "--threads", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    assert pack_sizes(tmp_path) == [2, 2, 2, 2]


def test_dry_run_says_which_runs_pack(spec_file, capsys):
    assert main(["study", str(spec_file), "--dry-run", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "Packing: 4 of 4 runs train in 2 packs (sizes 2); 0 train alone" in out
    assert main(["study", str(spec_file), "--dry-run", "--workers", "1", "--pack", "off"]) == 0
    assert "Packing: off" in capsys.readouterr().out


def test_cuda_without_cuda_is_a_one_line_error(spec_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code = main(["study", str(spec_file), "--out", str(tmp_path), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--device cuda" in err and not (tmp_path / "normlab.db").exists()


def test_bench_json_at_tiny_size(capsys):
    args = ["bench", "--json", "--steps", "2", "--norms", "bn", "--batch-sizes", "2"]
    assert main([*args, "--pack-sizes", "2", "--no-compile"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    for key in ("norm", "batch_size", "pack_size", "packed_ips", "plain_ips", "compiled_ips"):
        assert key in row
    assert (row["norm"], row["batch_size"], row["pack_size"]) == ("bn", 2, 2)
    assert row["packed_ips"] > 0 and row["plain_ips"] > 0 and row["compiled_ips"] is None
    assert row["ratio"] == pytest.approx(row["packed_ips"] / row["plain_ips"])
    assert 0 < row["packed_peak_fraction"] < 1


def test_bench_table(capsys):
    args = ["bench", "--steps", "2", "--norms", "ln", "--batch-sizes", "2", "--pack-sizes", "2"]
    assert main([*args, "--no-compile"]) == 0
    out = capsys.readouterr().out
    assert "| ln | 2 | 2 |" in out and "matmul peak" in out
