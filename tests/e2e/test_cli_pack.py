"""CLI: --pack, --device, packing in --dry-run, and `normlab bench`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from normlab.cli import main
from normlab.study import load_spec
from normlab.study.packrule import PackChoice, load_choices, record_choices, rule_key
from normlab.study.plan import check_study

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


def recorded_sizes(out):
    """Runs per pack the study recorded for each configuration (``packrule.py``)."""
    return sorted(choice.size for choice in load_choices(out).values())


def test_study_packs_by_default_and_not_with_pack_off(spec_file, tmp_path):
    args = ["study", str(spec_file), "--workers", "1", "--threads", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "auto")]) == 0
    # The CLI calibrates: each norm's pack size is measured (2, or 1 where packing measured
    # slower), recorded, and the runs trained at it.
    sizes = recorded_sizes(tmp_path / "auto")
    assert len(sizes) == 2 and set(sizes) <= {1, 2}
    assert pack_sizes(tmp_path / "auto") == sorted([size for size in sizes for _ in range(2)])
    assert main([*args, "--out", str(tmp_path / "off"), "--pack", "off", "--device", "cpu"]) == 0
    assert pack_sizes(tmp_path / "off") == [1, 1, 1, 1]


def test_packed_study_with_two_workers(spec_file, tmp_path):
    record_choices(tmp_path, {key: PackChoice(2, "measured", 2.0) for key in keys(spec_file)})
    args = ["study", str(spec_file), "--workers", "2", "--threads", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    assert pack_sizes(tmp_path) == [2, 2, 2, 2]


def keys(spec_file):
    runs, dataset = check_study(load_spec(spec_file))
    return sorted({rule_key(run.config, tuple(dataset.input_shape)) for run in runs})


def test_dry_run_says_which_runs_pack(spec_file, tmp_path, capsys):
    bn, ln = keys(spec_file)  # sorted: "bn" < "ln" inside the JSON keys
    record_choices(
        tmp_path,
        {
            bn: PackChoice(2, "measured", 1.9, ((2, 1.9),)),
            ln: PackChoice(1, "measured", 0.8, ((2, 0.8),), "packed at best 0.80x alone (K=2)"),
        },
    )
    args = ["study", str(spec_file), "--dry-run", "--workers", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Packing: 2 of 4 runs train in 1 packs (sizes 2); 2 train alone" in out
    assert (
        "  packed: resnet norm=bn batch=8: K=2, 1.90x alone (measured K 2: 1.90x) [2 runs]" in out
    )
    assert "  alone: resnet norm=ln batch=8: packed at best 0.80x alone (K=2)" in out
    # A fresh folder: measured now, one line per configuration either way.
    assert main(["study", str(spec_file), "--dry-run", "--workers", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(" norm=bn batch=8: " in line for line in lines) == 1
    assert sum(" norm=ln batch=8: " in line for line in lines) == 1
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


USER_MODEL = Path(__file__).parent / "user_models.py"


@pytest.mark.parametrize("ref", ["resnet", f"{USER_MODEL}:concat_dropout"])
def test_bench_model_json_for_a_built_in_and_a_user_file_model(ref, capsys):
    args = ["bench", "--model", ref, "--data", "digits", "--json", "--steps", "2"]
    assert main([*args, "--batch-sizes", "2,4", "--pack-sizes", "2,3"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["model"], row["batch_size"]) for row in rows] == [(ref, 2), (ref, 4)]
    for row in rows:
        assert row["alone_ips"] > 0 and row["threads"] == 1 and row["device"] == "cpu"
        if not row["packed"]:  # no packed form for this model (yet): says why, trains alone
            assert "packed form" in row["reason"] and row["rule_pack_size"] == 1
            continue
        assert [entry["pack_size"] for entry in row["packed"]] == [2, 3]
        for entry in row["packed"]:
            assert entry["ips"] > 0
            assert entry["ratio"] == pytest.approx(entry["ips"] / row["alone_ips"])
        best = max(row["packed"], key=lambda entry: entry["ratio"])
        assert (row["best_pack_size"], row["best_ratio"]) == (best["pack_size"], best["ratio"])
        assert row["rule_pack_size"] in (1, row["best_pack_size"])


def test_bench_model_table_and_a_model_that_does_not_fit(capsys):
    args = ["bench", "--model", "resnet", "--data", "digits", "--steps", "1"]
    assert main([*args, "--batch-sizes", "2", "--pack-sizes", "2"]) == 0
    out = capsys.readouterr().out
    assert "| model | norm | batch | alone img/s | K=2 img/s (ratio) | best K |" in out
    assert "| resnet | bn | 2 |" in out
    wrong = f"{USER_MODEL}:three_channels"  # RGB input only; digits are 1x8x8
    assert main(["bench", "--model", wrong, "--data", "digits", "--batch-sizes", "2"]) == 2
    err = capsys.readouterr().err
    assert "three_channels" in err and "--data" in err
