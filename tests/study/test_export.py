"""Exporting a store: one row per run with config columns, per-epoch curves; CSV and Parquet."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from normlab.errors import NormlabError
from normlab.study import STORE_NAME, expand, open_store, spec_from_dict
from normlab.study.export import PARQUET_HINT, export_store, run_table
from normlab.train import EpochRecord, RunResult


@pytest.fixture
def store_dir(tmp_path):
    """A store with 4 runs (no training: results are made up), one of them diverged."""
    spec = spec_from_dict(
        {
            "study": {"name": "export", "seeds": [0, 1]},
            "run": {"dataset": "synthetic", "depth": 8, "widths": [4, 4, 4], "epochs": 2},
            "factors": {"norm": ["bn", "gn"], "norm_options": {"gn": {"groups": [2]}}},
            "lr": {"mode": "fixed", "base_lr": 0.05},
        }
    )
    runs = expand(spec)
    with open_store(tmp_path / STORE_NAME) as store:
        store.add_study(spec.study_id, spec.name, spec.to_dict())
        store.add_runs(spec.study_id, runs)
        for index, run in enumerate(runs):
            epochs = [
                EpochRecord(e, 1.0 / (e + index + 1), 0.5 + 0.1 * e, 0.4 + 0.1 * e, 0.05)
                for e in range(2)
            ]
            if index == 3:
                result = RunResult(
                    run.config.run_id,
                    "diverged",
                    steps=7,
                    epochs=epochs[:1],
                    error="loss nan\nat step 7",
                )
            else:
                result = RunResult(
                    run.config.run_id,
                    "done",
                    test_acc=0.1 * index + 1 / 3,
                    val_acc=0.7,
                    train_loss=0.25,
                    train_acc=0.9,
                    steps=30,
                    wall_time=1.5,
                    epochs=epochs,
                )
            store.record(result)
    return tmp_path, runs


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_csv_round_trip(store_dir):
    out, runs = store_dir
    written = export_store(out, "csv")
    assert written == [(out / "runs.csv", 4), (out / "runs_epochs.csv", 7)]
    rows = read_csv(out / "runs.csv")
    by_id = {row["run_id"]: row for row in rows}
    assert set(by_id) == {run.config.run_id for run in runs}
    with open_store(out / STORE_NAME, create=False) as store:
        records = store.records()
    for record in records:
        row = by_id[record["run_id"]]
        assert row["status"] == record["status"]
        for metric in ("test_acc", "val_acc", "wall_time"):
            value = record[metric]
            assert (
                (row[metric] == "") if value is None else float(row[metric]) == value
            )  # repr: exact
        assert json.loads(row["cell"]) == record["cell"]
        assert row["config.norm"] == record["config"]["norm"]
        assert int(row["config.batch_size"]) == record["config"]["batch_size"]
        assert json.loads(row["config.widths"]) == [4, 4, 4]
        assert float(row["config.lr"]) == record["config"]["lr"]
        groups = record["config"]["norm_options"].get("groups")
        assert row["config.norm_options.groups"] == ("" if groups is None else str(groups))
    diverged = next(row for row in rows if row["status"] == "diverged")
    assert diverged["error"] == "loss nan\nat step 7" and diverged["test_acc"] == ""
    epochs = read_csv(out / "runs_epochs.csv")
    assert {row["run_id"] for row in epochs} == set(by_id)
    assert list(epochs[0]) == ["run_id", "epoch", "train_loss", "train_acc", "val_acc", "lr"]


def test_config_columns_are_prefixed_so_the_budget_and_steps_trained_differ(store_dir):
    out, _ = store_dir
    with open_store(out / STORE_NAME, create=False) as store:
        table = run_table(store.records())
    assert "steps" in table.columns and "config.steps" in table.columns
    assert table.columns.index("config.dataset") < table.columns.index("config.seed")
    assert table.rows[0]["config.steps"] is None and table.rows[0]["steps"] == 30


def test_output_names_the_runs_file_and_the_epochs_file_goes_beside_it(store_dir, tmp_path):
    out, _ = store_dir
    target = tmp_path / "exports" / "study.csv"
    written = export_store(out, "csv", target)
    assert [path for path, _ in written] == [target, tmp_path / "exports" / "study_epochs.csv"]
    assert all(path.exists() for path, _ in written)


def test_parquet_round_trip(store_dir):
    parquet = pytest.importorskip("pyarrow.parquet")
    out, runs = store_dir
    export_store(out, "parquet")
    rows = parquet.read_table(out / "runs.parquet").to_pylist()
    csv_rows = read_csv(export_store(out, "csv")[0][0])
    assert len(rows) == len(runs)
    for row, csv_row in zip(rows, csv_rows, strict=True):
        assert row["run_id"] == csv_row["run_id"]
        assert row["config.widths"] == [4, 4, 4]
        assert row["test_acc"] == (float(csv_row["test_acc"]) if csv_row["test_acc"] else None)
        assert row["config.norm_options.groups"] == (
            int(csv_row["config.norm_options.groups"])
            if csv_row["config.norm_options.groups"]
            else None
        )
    epochs = parquet.read_table(out / "runs_epochs.parquet").to_pylist()
    assert len(epochs) == 7 and epochs[0]["epoch"] == 0


def test_parquet_without_pyarrow_says_how_to_install(store_dir, monkeypatch):
    out, _ = store_dir
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(NormlabError) as error:
        export_store(out, "parquet")
    assert str(error.value) == PARQUET_HINT
    assert "pip install 'normlab[parquet]'" in PARQUET_HINT
    assert not (out / "runs.parquet").exists()


def test_no_store(tmp_path):
    with pytest.raises(NormlabError, match="no normlab store"):
        export_store(tmp_path, "csv")
    assert not (tmp_path / STORE_NAME).exists()


def test_unknown_format(store_dir):
    with pytest.raises(NormlabError, match="export format 'xlsx'"):
        export_store(store_dir[0], "xlsx")
