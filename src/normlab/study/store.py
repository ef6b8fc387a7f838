"""The study store: one SQLite file, ``DIR/normlab.db``, written only by the driver process.

Tables: ``schema_version``; ``studies`` (id = spec content hash, spec JSON); ``runs`` (one row per
distinct run: ``run_id`` = config hash, ``config`` JSON, ``status``, metrics, error, attempts,
torch ``threads``); ``study_runs`` (which study planned which run, and the run's cell in that
study); ``epochs`` (per-epoch curves). ``runs.study_id`` / ``runs.cell`` name the study that first
planned the run; ``study_runs`` is the membership that reads go through.

Runs are content-addressed: two studies in one store that plan the same config share one row, so
a study added with ``--force-new`` (e.g. the same grid with one more seed) reuses the runs already
trained and trains only the new ones.

Durability: WAL journal; a run is marked ``running`` (attempts + 1) when it is dispatched and
written with its metrics and curves in one transaction when it finishes, so a killed process loses
at most the runs in flight, which stay ``running`` and are retried on resume.

Schema changes go through :data:`~.schema.MIGRATIONS` (``schema.py``), each applied in one transaction, never a silent
rebuild. A file that is not a normlab store, is corrupted, or comes from a newer normlab is refused
before anything is written, and without leaving ``-wal`` / ``-shm`` files beside it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from normlab.errors import NormlabError
from normlab.train import RunResult

from .plan import PlannedRun
from .schema import MIGRATIONS, SCHEMA_VERSION, migrate, read_version

__all__ = ["FINISHED", "MIGRATIONS", "SCHEMA_VERSION", "Store", "open_store", "read_version"]

FINISHED = ("done", "diverged")

RESULT_COLUMNS = (
    "test_acc",
    "test_acc_batch_stats",
    "val_acc",
    "train_loss",
    "train_acc",
    "steps",
    "wall_time",
    "images_per_sec",
    "error",
    "pack_size",
    "device",
    "collapsed",
)


class Store:
    """A normlab SQLite store (create with :func:`open_store`)."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- studies ---------------------------------------------------------------------------
    def study_ids(self) -> list[str]:
        """Studies in the order they were added."""
        query = "SELECT study_id FROM studies ORDER BY created_at"
        return [row[0] for row in self.connection.execute(query)]

    def add_study(
        self,
        study_id: str,
        name: str,
        spec: dict[str, Any],
        data_files: Iterable[tuple[str, int, str]] = (),
        model_files: Iterable[tuple[str, int, str]] = (),
        model_fingerprint: str = "",
    ) -> None:
        """Register a study (kept as it is if already there) with the data files it reads and
        the model files it builds from (see :meth:`study_model`)."""
        files = [list(entry) for entry in data_files]
        with self.connection:
            self.connection.execute(
                "INSERT OR IGNORE INTO studies (study_id, name, spec, created_at, data_files,"
                " model_files, model_fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    study_id,
                    name,
                    json.dumps(spec, sort_keys=True),
                    time.time(),
                    json.dumps(files) if files else None,
                    json.dumps([list(entry) for entry in model_files]),
                    model_fingerprint,
                ),
            )

    def study_model(self, study_id: str) -> tuple[list[tuple[str, int, str]], str] | None:
        """(model files, the model fingerprint its runs carry) of ``study_id``; None if unknown
        (no such study, or one recorded before schema v7)."""
        row = self.connection.execute(
            "SELECT model_files, model_fingerprint FROM studies WHERE study_id = ?", (study_id,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return [tuple(entry) for entry in json.loads(row[0])], row[1] or ""  # type: ignore[misc]

    def adopt_model(self, study_id: str, model_files: Iterable[tuple[str, int, str]]) -> None:
        """Record the current model files of a study recorded before schema v7: its runs keep
        their ids (fingerprint ""), and a later change of these files is refused."""
        with self.connection:
            self.connection.execute(
                "UPDATE studies SET model_files = ?, model_fingerprint = '' WHERE study_id = ?"
                " AND model_files IS NULL",
                (json.dumps([list(entry) for entry in model_files]), study_id),
            )

    def study_data_files(self, study_id: str) -> list[tuple[str, int, str]] | None:
        """(path, size, sha256) of each data file ``study_id`` was planned on; None if unknown
        (no such study, built-in data, or a study recorded before schema v3)."""
        row = self.connection.execute(
            "SELECT data_files FROM studies WHERE study_id = ?", (study_id,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return [tuple(entry) for entry in json.loads(row[0])]  # type: ignore[misc]

    def study_name(self, study_id: str) -> str:
        """The study's ``[study] name`` (its id if the study is unknown)."""
        row = self.connection.execute(
            "SELECT name FROM studies WHERE study_id = ?", (study_id,)
        ).fetchone()
        return study_id if row is None else row[0]

    def add_leg(self, study_id: str, wall_time: float) -> None:
        """Record one invocation's wall time on ``study_id``."""
        with self.connection:
            self.connection.execute(
                "INSERT INTO legs VALUES (?, ?, ?)", (study_id, time.time(), wall_time)
            )

    def legs(self, study_id: str) -> list[float]:
        """Wall time of each invocation that ran ``study_id``, oldest first (none before v5)."""
        query = "SELECT wall_time FROM legs WHERE study_id = ? ORDER BY finished_at"
        return [row[0] for row in self.connection.execute(query, (study_id,))]

    def set_estimate(self, study_id: str, estimate: dict[str, Any]) -> None:
        """Keep the time estimate made before ``study_id`` trained; the first one stays (a
        resume's estimate covers only what was left)."""
        with self.connection:
            self.connection.execute(
                "UPDATE studies SET estimate = ? WHERE study_id = ? AND estimate IS NULL",
                (json.dumps(estimate, sort_keys=True), study_id),
            )

    def estimate(self, study_id: str) -> dict[str, Any] | None:
        """The estimate :meth:`set_estimate` kept; None if none (or a store before v6)."""
        row = self.connection.execute(
            "SELECT estimate FROM studies WHERE study_id = ?", (study_id,)
        ).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def set_spec(self, study_id: str, spec: dict[str, Any]) -> None:
        """Replace the stored spec of ``study_id`` by one of the same identity (the adaptive
        protocol's budget is not part of it: a rerun with a larger budget records the new one)."""
        with self.connection:
            self.connection.execute(
                "UPDATE studies SET spec = ? WHERE study_id = ?",
                (json.dumps(spec, sort_keys=True), study_id),
            )

    def study_spec(self, study_id: str) -> dict[str, Any]:
        row = self.connection.execute(
            "SELECT spec FROM studies WHERE study_id = ?", (study_id,)
        ).fetchone()
        if row is None:
            raise NormlabError(f"{self.path}: no study {study_id}")
        return json.loads(row[0])

    # -- runs ------------------------------------------------------------------------------
    def add_runs(self, study_id: str, runs: Iterable[PlannedRun]) -> None:
        """Register a study's planned runs; a run already present (from this or another study)
        keeps its state and is only linked to ``study_id``. A run the fixed protocol recorded
        (role '') that an adaptive study plans takes the adaptive role and round: the same
        training is a tuning or evaluation run of the adaptive study (its seed says which)."""
        runs = list(runs)
        now = time.time()
        with self.connection:
            self.connection.executemany(
                "INSERT OR IGNORE INTO runs (run_id, study_id, config, cell, status, updated_at,"
                " role, round) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                [
                    (
                        run.config.run_id,
                        study_id,
                        run.config.to_json(),
                        run.cell_key,
                        now,
                        run.role,
                        run.round,
                    )
                    for run in runs
                ],
            )
            self.connection.executemany(
                "UPDATE runs SET role = ?, round = ? WHERE run_id = ? AND role = ''",
                [(run.role, run.round, run.config.run_id) for run in runs if run.role],
            )
            self.connection.executemany(
                "INSERT OR IGNORE INTO study_runs VALUES (?, ?, ?)",
                [(study_id, run.config.run_id, run.cell_key) for run in runs],
            )

    def statuses(self) -> dict[str, str]:
        return dict(self.connection.execute("SELECT run_id, status FROM runs"))

    def mark_running(self, run_ids: Iterable[str]) -> None:
        """Runs handed to a worker: one more attempt each."""
        with self.connection:
            self.connection.executemany(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, updated_at = ?"
                " WHERE run_id = ?",
                [(time.time(), run_id) for run_id in run_ids],
            )

    def mark_pending(self, run_ids: Iterable[str]) -> None:
        """Return interrupted runs to the queue (they are retried on resume)."""
        with self.connection:
            self.connection.executemany(
                "UPDATE runs SET status = 'pending', updated_at = ? WHERE run_id = ?"
                " AND status = 'running'",
                [(time.time(), run_id) for run_id in run_ids],
            )

    def record(self, result: RunResult, threads: int | None = None) -> None:
        """Write a finished run (status, metrics, curves, torch threads) in one transaction."""
        values = [getattr(result, column) for column in RESULT_COLUMNS]
        with self.connection:
            self.connection.execute(
                f"UPDATE runs SET status = ?, {', '.join(c + ' = ?' for c in RESULT_COLUMNS)},"
                " threads = ?, updated_at = ? WHERE run_id = ?",
                (result.status, *values, threads, time.time(), result.run_id),
            )
            self.connection.execute("DELETE FROM epochs WHERE run_id = ?", (result.run_id,))
            self.connection.execute("DELETE FROM diagnostics WHERE run_id = ?", (result.run_id,))
            self.connection.executemany(
                "INSERT INTO diagnostics VALUES (?, ?, ?)",
                [
                    (result.run_id, kind, json.dumps(record, sort_keys=True))
                    for kind, record in result.diagnostics.items()
                ],
            )
            self.connection.executemany(
                "INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (result.run_id, e.epoch, e.train_loss, e.train_acc, e.val_acc, e.lr)
                    for e in result.epochs
                ],
            )

    def records(self, study_id: str | None = None) -> list[dict[str, Any]]:
        """The runs of ``study_id`` (of every study if None) as plain dicts: config and cell
        decoded, ``study_id`` and ``cell`` as that study planned them, metrics as stored, and
        ``diagnostics``: the run's records by kind (:meth:`diagnostics`; empty if none)."""
        columns = [
            f"runs.{row[1]}"
            for row in self.connection.execute("PRAGMA table_info(runs)")
            if row[1] not in ("study_id", "cell")
        ]
        query = (
            f"SELECT study_runs.study_id, study_runs.cell, {', '.join(columns)} FROM study_runs"
            " JOIN runs USING (run_id)"
            + (" WHERE study_runs.study_id = ?" if study_id else "")
            + " ORDER BY study_runs.rowid"
        )
        cursor = self.connection.execute(query, (study_id,) if study_id else ())
        names = [d[0] for d in cursor.description]
        diagnostics = self.diagnostics(study_id)
        records = []
        for row in cursor:
            record = dict(zip(names, row, strict=True))
            record["config"] = json.loads(record["config"])
            record["cell"] = json.loads(record["cell"])
            record["diagnostics"] = diagnostics.get(record["run_id"], {})
            records.append(record)
        return records

    def diagnostics(self, study_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Run id -> {kind: record} for the runs of ``study_id`` (every study if None)."""
        query = "SELECT diagnostics.run_id, kind, record FROM diagnostics"
        if study_id:
            query += " JOIN study_runs USING (run_id) WHERE study_runs.study_id = ?"
        found: dict[str, dict[str, Any]] = {}
        for run_id, kind, record in self.connection.execute(query, (study_id,) if study_id else ()):
            found.setdefault(run_id, {})[kind] = json.loads(record)
        return found

    def curves(self, run_id: str) -> list[dict[str, Any]]:
        cursor = self.connection.execute(
            "SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]


def open_store(path: str | Path, create: bool = True) -> Store:
    """Open (or create) the store at ``path``, migrating an older schema forward.

    A file that is not a normlab store, is corrupted, or comes from a newer normlab is refused
    with a :class:`NormlabError` and left untouched (no write, no ``-wal`` / ``-shm`` beside it).
    An empty file is an empty store.
    """
    path = Path(path)
    exists = path.exists() and path.stat().st_size > 0
    if not exists and not create:
        raise NormlabError(f"{path}: no normlab store here")
    if exists:
        version = read_version(path)
        if version > SCHEMA_VERSION:
            raise NormlabError(
                f"{path}: store schema version {version} is newer than this normlab "
                f"({SCHEMA_VERSION}); upgrade normlab to read it"
            )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        version = 0
    connection = sqlite3.connect(path, timeout=30.0)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA foreign_keys=ON")
        if version < SCHEMA_VERSION:
            migrate(connection, version, SCHEMA_VERSION)
    except BaseException:
        connection.close()
        raise
    return Store(connection, path)
