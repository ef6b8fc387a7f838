"""The SQLite store: transactions, studies sharing runs, migrations, and refusing foreign files."""

from __future__ import annotations

import functools
import os
import random
import sqlite3

import pytest

from normlab.errors import NormlabError
from normlab.study import store as store_module
from normlab.study.plan import PlannedRun
from normlab.study.store import MIGRATIONS, SCHEMA_VERSION, open_store, read_version
from normlab.train import EpochRecord, RunConfig, RunResult


def planned(seed: int, norm: str = "bn", cell: dict | None = None) -> PlannedRun:
    config = RunConfig(dataset="synthetic", widths=(4, 4, 4), epochs=1, norm=norm, seed=seed)
    return PlannedRun(config, cell if cell is not None else {"norm": norm})


def finished(run: PlannedRun, test_acc: float = 0.5) -> RunResult:
    epochs = [EpochRecord(epoch=0, train_loss=1.0, train_acc=0.4, val_acc=0.45, lr=0.1)]
    return RunResult(run.config.run_id, "done", test_acc=test_acc, val_acc=0.45, epochs=epochs)


def side_files(path) -> list[str]:
    return [name for name in os.listdir(path.parent) if name != path.name]


def test_new_store_is_wal_at_the_current_version(tmp_path):
    with open_store(tmp_path / "sub" / "normlab.db") as store:
        assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert read_version(tmp_path / "sub" / "normlab.db") == SCHEMA_VERSION
    assert side_files(tmp_path / "sub" / "normlab.db") == []  # closed cleanly: WAL checkpointed


def test_runs_are_registered_pending_and_recorded_with_curves(tmp_path):
    runs = [planned(0), planned(1)]
    with open_store(tmp_path / "normlab.db") as store:
        store.add_study("s1", "one", {"name": "one"})
        store.add_runs("s1", runs)
        store.add_runs("s1", runs)  # idempotent
        store.mark_running([runs[0].config.run_id])
        store.record(finished(runs[0], 0.75), threads=1)
        records = {r["run_id"]: r for r in store.records("s1")}
        curve = store.curves(runs[0].config.run_id)
    done, pending = records[runs[0].config.run_id], records[runs[1].config.run_id]
    assert (done["status"], done["test_acc"], done["attempts"], done["threads"]) == (
        "done",
        0.75,
        1,
        1,
    )
    assert done["config"] == runs[0].config.to_dict() and done["cell"] == {"norm": "bn"}
    assert (pending["status"], pending["attempts"]) == ("pending", 0)
    assert [row["epoch"] for row in curve] == [0]


def test_a_run_is_written_in_one_transaction(tmp_path):
    run = planned(0)
    bad = RunResult(
        run.config.run_id,
        "done",
        test_acc=0.9,
        epochs=[EpochRecord(epoch=0, train_loss=None, train_acc=0.0, val_acc=0.0, lr=0.1)],
    )
    with open_store(tmp_path / "normlab.db") as store:
        store.add_study("s1", "one", {})
        store.add_runs("s1", [run])
        store.mark_running([run.config.run_id])
        with pytest.raises(sqlite3.IntegrityError):
            store.record(bad)  # the curve violates NOT NULL after the status update ran
        (record,) = store.records("s1")
        assert (record["status"], record["test_acc"]) == ("running", None)
        assert store.curves(run.config.run_id) == []


def test_studies_share_identical_runs_and_keep_their_own_cells(tmp_path):
    shared = planned(0)
    with open_store(tmp_path / "normlab.db") as store:
        store.add_study("a", "a", {})
        store.add_runs("a", [shared, planned(1)])
        store.add_study("b", "b", {})
        store.add_runs("b", [PlannedRun(shared.config, {"norm": "bn", "batch_size": 32})])
        store.record(finished(shared))
        assert len(store.statuses()) == 2
        (record_b,) = store.records("b")
        assert record_b["study_id"] == "b" and record_b["status"] == "done"
        assert record_b["cell"] == {"norm": "bn", "batch_size": 32}
        assert [r["study_id"] for r in store.records()] == ["a", "a", "b"]
        assert store.study_ids() == ["a", "b"]


def write_v1_store(path) -> PlannedRun:
    """A store as normlab wrote it at schema version 1 (before study_runs and threads)."""
    run = planned(3)
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        + MIGRATIONS[1]
        + "INSERT INTO schema_version VALUES (1);"
    )
    db.execute("INSERT INTO studies VALUES ('old', 'old study', '{}', 0)")
    db.execute(
        "INSERT INTO runs (run_id, study_id, config, cell, status, test_acc, attempts, updated_at)"
        " VALUES (?, 'old', ?, ?, 'done', 0.625, 1, 0)",
        (run.config.run_id, run.config.to_json(), run.cell_key),
    )
    db.commit()
    db.close()
    return run


def test_a_version_1_store_is_migrated_forward_keeping_its_runs(tmp_path):
    path = tmp_path / "normlab.db"
    run = write_v1_store(path)
    assert read_version(path) == 1
    with open_store(path) as store:
        (record,) = store.records("old")
        columns = {row[1] for row in store.connection.execute("PRAGMA table_info(runs)")}
    assert read_version(path) >= 7
    assert (record["run_id"], record["status"], record["test_acc"]) == (
        run.config.run_id,
        "done",
        0.625,
    )
    assert record["cell"] == {"norm": "bn"} and "threads" in columns
    with open_store(path) as store:
        assert store.study_data_files("old") is None  # recorded before v3: unknown, not empty


def test_a_version_5_store_gains_the_estimate_and_keeps_its_study(tmp_path):
    path = tmp_path / "normlab.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        + "".join(MIGRATIONS[v] + f"INSERT INTO schema_version VALUES ({v});" for v in range(1, 6))
    )
    db.execute("INSERT INTO studies VALUES ('old', 'old study', '{}', 0, NULL)")
    db.commit()
    db.close()
    with open_store(path) as store:
        assert store.estimate("old") is None  # recorded before v6: no estimate, still readable
        store.set_estimate("old", {"wall_seconds": 360.0})
        store.set_estimate("old", {"wall_seconds": 60.0})  # a resume's estimate: the first stays
        assert store.estimate("old") == {"wall_seconds": 360.0}
        assert store.study_name("old") == "old study"
    assert read_version(path) >= 7


def test_a_study_keeps_the_data_files_it_was_planned_on(tmp_path):
    files = [("/data/cifar-10-python.tar.gz", 170498071, "ab" * 32)]
    with open_store(tmp_path / "normlab.db") as store:
        store.add_study("s1", "one", {}, data_files=files)
        store.add_study("s2", "two", {})
        store.add_study("s1", "one again", {}, data_files=[("/other", 1, "cd" * 32)])
        assert store.study_data_files("s1") == files  # the first registration stands
        assert store.study_data_files("s2") is None
        assert store.study_data_files("missing") is None


def test_a_future_migration_runs_once_and_keeps_data(tmp_path, monkeypatch):
    path = tmp_path / "normlab.db"
    with open_store(path) as store:
        store.add_study("s1", "one", {})
        store.add_runs("s1", [planned(0)])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(MIGRATIONS, SCHEMA_VERSION + 1, "ALTER TABLE runs ADD COLUMN note TEXT;")
    with open_store(path) as store:
        (record,) = store.records("s1")
    assert read_version(path) == SCHEMA_VERSION + 1 and record["note"] is None
    with open_store(path) as store:  # already migrated: nothing to do
        versions = [
            row[0] for row in store.connection.execute("SELECT version FROM schema_version")
        ]
    assert versions == list(range(1, SCHEMA_VERSION + 2))


def test_a_failing_migration_leaves_the_store_at_its_version(tmp_path, monkeypatch):
    path = tmp_path / "normlab.db"
    open_store(path).close()
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(
        MIGRATIONS,
        SCHEMA_VERSION + 1,
        "ALTER TABLE runs ADD COLUMN note TEXT; INSERT INTO no_such_table VALUES (1);",
    )
    with pytest.raises(sqlite3.OperationalError):
        open_store(path)
    monkeypatch.undo()
    with open_store(path) as store:
        columns = {row[1] for row in store.connection.execute("PRAGMA table_info(runs)")}
    assert read_version(path) == SCHEMA_VERSION and "note" not in columns


def foreign_sqlite(path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE photos (id INTEGER)")
    db.commit()
    db.close()


def newer_store(path) -> None:
    open_store(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()


def corrupted_store(path, start: int) -> None:
    with open_store(path) as store:
        store.add_study("s1", "one", {})
        store.add_runs("s1", [planned(seed) for seed in range(50)])
    data = bytearray(path.read_bytes())
    data[start:] = random.Random(0).randbytes(len(data) - start)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.write_bytes(os.urandom(8192)), "not an SQLite database"),
        (lambda path: path.write_text("run_id,status\n1,done\n"), "not an SQLite database"),
        (foreign_sqlite, "no schema_version table"),
        # Keep the 100-byte SQLite header and garble every page, or every page after the first.
        (functools.partial(corrupted_store, start=100), "corrupted"),
        (functools.partial(corrupted_store, start=4096), "corrupted"),
        (newer_store, "newer than this normlab"),
    ],
    ids=["random-bytes", "text", "foreign-sqlite", "corrupted", "corrupted-tail", "newer-version"],
)
def test_a_file_that_is_not_a_usable_store_is_refused_untouched(tmp_path, make, message):
    path = tmp_path / "normlab.db"
    make(path)
    assert side_files(path) == []
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    with pytest.raises(NormlabError, match=message) as refused:
        open_store(path)
    assert str(path) in str(refused.value)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert side_files(path) == []


def test_a_folder_in_place_of_the_store_file_is_a_clear_error(tmp_path):
    path = tmp_path / "normlab.db"
    path.mkdir()
    with pytest.raises(NormlabError, match="cannot read"):
        open_store(path)
    assert list(tmp_path.iterdir()) == [path] and list(path.iterdir()) == []


def test_open_without_create_needs_a_store(tmp_path):
    with pytest.raises(NormlabError, match="no normlab store"):
        open_store(tmp_path / "normlab.db", create=False)
    assert not (tmp_path / "normlab.db").exists()


def test_pack_size_device_collapse_and_diagnostics_are_recorded(tmp_path):
    from normlab.train import RunResult

    run = planned(5)
    result = RunResult(
        run_id=run.config.run_id,
        status="done",
        test_acc=0.5,
        pack_size=16,
        device="cpu",
        collapsed=False,
        diagnostics={"gap": {"running_acc": 0.5, "precise_acc": 0.52}},
    )
    with open_store(tmp_path / "normlab.db") as store:
        store.add_study("s", "s", {})
        store.add_runs("s", [run])
        store.record(result)
        store.record(result)  # recorded again (a retried run): one row per kind, not two
        (record,) = store.records("s")
        found = store.diagnostics("s")
    assert (record["pack_size"], record["device"], record["collapsed"]) == (16, "cpu", 0)
    assert found == {run.config.run_id: {"gap": {"precise_acc": 0.52, "running_acc": 0.5}}}


def test_a_version_6_store_gains_model_columns_unknown_for_its_studies(tmp_path):
    path = tmp_path / "normlab.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        + "".join(MIGRATIONS[v] + f"INSERT INTO schema_version VALUES ({v});" for v in range(1, 7))
    )
    db.execute("INSERT INTO studies VALUES ('old', 'old study', '{}', 0, NULL, NULL)")
    db.commit()
    db.close()
    with open_store(path) as store:
        assert store.study_model("old") is None  # recorded before v7: unknown, not empty
        store.adopt_model("old", [("/m/net.py", 10, "ab")])
        assert store.study_model("old") == ([("/m/net.py", 10, "ab")], "")
        store.add_study(
            "new", "new", {}, model_files=[("/m/net.py", 10, "ab")], model_fingerprint="f"
        )
        assert store.study_model("new") == ([("/m/net.py", 10, "ab")], "f")
    assert read_version(path) >= 7


def test_a_version_7_store_gains_roles_and_rounds_and_keeps_its_runs(tmp_path):
    path = tmp_path / "normlab.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        + "".join(MIGRATIONS[v] + f"INSERT INTO schema_version VALUES ({v});" for v in range(1, 8))
    )
    old = planned(0)
    db.execute("INSERT INTO studies VALUES ('old', 'old', '{}', 0, NULL, NULL, NULL, NULL)")
    db.execute(
        "INSERT INTO runs (run_id, study_id, config, cell, status, test_acc, updated_at)"
        " VALUES (?, 'old', ?, ?, 'done', 0.5, 0)",
        (old.config.run_id, old.config.to_json(), old.cell_key),
    )
    db.execute("INSERT INTO study_runs VALUES ('old', ?, ?)", (old.config.run_id, old.cell_key))
    db.commit()
    db.close()
    tune, evaluate = (
        PlannedRun(planned(1000).config, {"norm": "bn"}, "tune"),
        PlannedRun(planned(3).config, {"norm": "bn"}, "eval", 2),
    )
    with open_store(path) as store:
        (record,) = store.records("old")
        assert (record["status"], record["test_acc"], record["role"], record["round"]) == (
            "done",
            0.5,
            "",
            0,
        )  # recorded before v8: the fixed protocol's
        store.add_study("new", "new", {})
        store.add_runs("new", [tune, evaluate, PlannedRun(old.config, old.cell, "eval", 1)])
        roles = {r["run_id"]: (r["role"], r["round"]) for r in store.records("new")}
    assert roles == {
        tune.config.run_id: ("tune", 0),
        evaluate.config.run_id: ("eval", 2),
        old.config.run_id: ("eval", 1),  # the fixed protocol's run, planned by an adaptive study
    }
    assert read_version(path) == SCHEMA_VERSION == 8


def test_set_spec_replaces_the_stored_spec(tmp_path):
    with open_store(tmp_path / "normlab.db") as store:
        store.add_study("s", "s", {"study": {"budget": "1m"}})
        store.set_spec("s", {"study": {"budget": "5m"}})
        assert store.study_spec("s") == {"study": {"budget": "5m"}}
