"""`normlab study SPEC --dry-run`, spec errors, and `normlab export`, end to end in-process."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from normlab.cli import main
from normlab.study import load_spec
from normlab.study.plan import expand

EXAMPLES = Path(__file__).parents[2] / "examples"

TINY = """\
[study]
name = "tiny"
seeds = [0, 1]

[run]
dataset = "synthetic"
dataset_options = { num_examples = 200 }
depth = 8
widths = [4, 4, 4]
epochs = 1
batch_size = 16

[factors]
norm = ["bn", "gn"]

[factors.norm_options.gn]
groups = [1, 2]

[lr]
mode = "tuned"
grid = [0.01, 0.1]
grid_scaling = "none"
"""


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")}


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    out = tmp_path / "out"
    before = files_under(tmp_path)
    code = main(["study", str(spec), "--dry-run", "--out", str(out), "--workers", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Plan: 3 cells, 12 runs" in captured.out  # (bn + gn x 2 groups) x 2 lr x 2 seeds
    assert "norm_options.gn.groups  1, 2" in captured.out
    assert "norm=gn norm_options.gn.groups=2  0.01, 0.1  4" in captured.out
    assert "Estimated time:" in captured.out and "with 2 worker(s)" in captured.out
    assert not out.exists()
    assert files_under(tmp_path) == before


def test_bad_spec_is_one_line_on_stderr_with_exit_code_2(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(
        TINY.replace(
            'norm = ["bn", "gn"]', 'norm = ["bn", "gn"]\nbatch_size = [8, "eight"]'
        ).replace("batch_size = 16\n", "")
    )
    code = main(["study", str(spec), "--dry-run", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert (
        captured.err
        == f"normlab: error: {spec}:14: factors.batch_size[1]: expected an integer, got 'eight'\n"
    )
    assert not (tmp_path / "out").exists()


def test_impossible_batch_is_refused_before_writing(tmp_path, capsys):
    spec = tmp_path / "big.toml"
    spec.write_text(TINY.replace("batch_size = 16", "batch_size = 4096"))
    code = main(["study", str(spec), "--out", str(tmp_path / "out"), "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(
        f"normlab: error: {spec}:11: run.batch_size: batch size 4096 is larger"
    )
    assert captured.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_study_then_export_csv(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        TINY.replace("seeds = [0, 1]", "seeds = [0]").replace("grid = [0.01, 0.1]", "grid = [0.1]")
    )
    out = tmp_path / "out"
    assert (
        main(["study", str(spec), "--out", str(out), "--workers", "1", "--threads", "1", "--quiet"])
        == 0
    )
    capsys.readouterr()
    assert main(["export", str(out), "--format", "csv", "--output", str(tmp_path / "t.csv")]) == 0
    captured = capsys.readouterr()
    assert f"wrote {tmp_path / 't.csv'} (3 rows)" in captured.out
    with open(tmp_path / "t.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["config.norm"] for row in rows) == ["bn", "gn", "gn"]
    assert all(row["status"] == "done" and 0.0 <= float(row["test_acc"]) <= 1.0 for row in rows)
    assert (tmp_path / "t_epochs.csv").exists()


def test_export_of_a_folder_without_a_store(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "csv"]) == 2
    assert "no normlab store" in capsys.readouterr().err


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_every_example_loads_and_expands(example):
    runs = expand(load_spec(EXAMPLES / example))
    assert len(runs) >= 1
    assert len({run.config.run_id for run in runs}) == len(runs)


def test_examples_are_shipped():
    assert {p.name for p in EXAMPLES.glob("*.toml")} >= {
        "default.toml",
        "dropout_bn.toml",
        "weight_decay.toml",
        "lr_sensitivity.toml",
    }
