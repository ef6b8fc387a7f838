"""The store's schema: its version, the migrations that build it, and how an existing file's
version is read without writing anything (``store.py`` opens and uses the store)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from normlab.errors import NormlabError

SCHEMA_VERSION = 8
SQLITE_MAGIC = b"SQLite format 3\x00"

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE studies (
        study_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        study_id TEXT NOT NULL REFERENCES studies(study_id),
        config TEXT NOT NULL,
        cell TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending','running','done','diverged','failed')),
        test_acc REAL,
        test_acc_batch_stats REAL,
        val_acc REAL,
        train_loss REAL,
        train_acc REAL,
        steps INTEGER,
        wall_time REAL,
        images_per_sec REAL,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    );
    CREATE TABLE epochs (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        epoch INTEGER NOT NULL,
        train_loss REAL NOT NULL,
        train_acc REAL NOT NULL,
        val_acc REAL NOT NULL,
        lr REAL NOT NULL,
        PRIMARY KEY (run_id, epoch)
    );
    CREATE INDEX runs_by_status ON runs(status);
    """,
    2: """
    CREATE TABLE study_runs (
        study_id TEXT NOT NULL REFERENCES studies(study_id),
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        cell TEXT NOT NULL,
        PRIMARY KEY (study_id, run_id)
    );
    INSERT INTO study_runs SELECT study_id, run_id, cell FROM runs;
    ALTER TABLE runs ADD COLUMN threads INTEGER;
    """,
    3: """
    ALTER TABLE studies ADD COLUMN data_files TEXT;
    """,
    4: """
    ALTER TABLE runs ADD COLUMN pack_size INTEGER;
    ALTER TABLE runs ADD COLUMN device TEXT;
    ALTER TABLE runs ADD COLUMN collapsed INTEGER;
    CREATE TABLE diagnostics (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        kind TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (run_id, kind)
    );
    """,
    5: """
    CREATE TABLE legs (
        study_id TEXT NOT NULL REFERENCES studies(study_id),
        finished_at REAL NOT NULL,
        wall_time REAL NOT NULL
    );
    """,
    6: """
    ALTER TABLE studies ADD COLUMN estimate TEXT;
    """,
    7: """
    ALTER TABLE studies ADD COLUMN model_files TEXT;
    ALTER TABLE studies ADD COLUMN model_fingerprint TEXT;
    """,
    8: """
    ALTER TABLE runs ADD COLUMN role TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN round INTEGER NOT NULL DEFAULT 0;
    """,
}
"""Version -> SQL that brings a store from version - 1 to version.

v2: runs shared between studies (``study_runs``); torch threads of each run (float results depend
on the thread count through reduction order).
v3: the data files a study was planned on (``studies.data_files``: JSON list of [path, size,
sha256]), so that resuming on changed data is refused; NULL for studies of built-in data and for
studies recorded before v3.
v4: per run, the pack size it trained in, its device and whether it collapsed (finished at
chance); table ``diagnostics``: one JSON record per run and kind (``gap``, ``stability``,
``noise``, ``variance_shift``).
v5: table ``legs``: the wall time of each invocation that ran a study (a resumed study's wall
time is the sum of its legs, not the last one's).
v6: ``studies.estimate``: the calibrated time estimate made before the study first trained (JSON:
estimated wall and one-worker seconds, runs covered, runs planned, workers, legs before it), so
the report sets it beside the measured wall time; NULL for studies recorded before v6 or run
without calibration.
v7: the model files a study was planned on (``studies.model_files``, JSON list as for data, with
``<distribution>==<version>`` entries for installed packages) and the model fingerprint its runs
carry (``studies.model_fingerprint``); both NULL for studies recorded before v7, which adopt the
current files on their next resume and keep their runs' ids (fingerprint "").
v8: the adaptive protocol's role of each run (``runs.role``: ``tune`` for a tuning-seed run,
``eval`` for an evaluation-seed run, '' for runs of the fixed protocol and every run recorded
before v8) and its evaluation round (``runs.round``: 1, 2, ...; 0 for tuning and fixed runs)."""


def read_version(path: str | Path) -> int:
    """Schema version of an existing store, read without writing anything.

    Raises :class:`NormlabError` for a file that is not a normlab store or is corrupted.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            magic = file.read(len(SQLITE_MAGIC))
    except OSError as error:  # a folder in its place, no permission, ...
        raise NormlabError(f"{path}: cannot read the store ({error.strerror})") from None
    if magic != SQLITE_MAGIC:
        raise NormlabError(f"{path}: not a normlab store (not an SQLite database)")
    # A plain read-only connection to a WAL database creates -shm and -wal files beside it.
    # Without a -wal file the database is fully checkpointed, and ``immutable`` reads it with no
    # side files and no locks; a -wal left by a killed process holds the latest commits and must
    # be read through (its -shm is already there).
    immutable = not Path(f"{path}-wal").exists()
    uri = path.resolve().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
            if "schema_version" not in tables:
                raise NormlabError(f"{path}: not a normlab store (no schema_version table)")
            row = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
            # Reads every page (cheap at a store's size): damage is found now, not mid-study.
            problem = connection.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(problem)
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise NormlabError(f"{path}: corrupted or unreadable normlab store ({error})") from None
    if row is None or row[0] is None:
        raise NormlabError(f"{path}: normlab store without a schema version")
    return int(row[0])


def migrate(connection: sqlite3.Connection, version: int, latest: int) -> None:
    """Bring ``connection``'s store from schema ``version`` (0: empty) to ``latest`` (the
    opener's :data:`SCHEMA_VERSION`) through :data:`MIGRATIONS`."""
    # executescript() commits before it runs, so the steps carry their own BEGIN/COMMIT: the
    # migration from `version` to `latest` is applied whole or not at all.
    steps = []
    if version == 0:
        steps.append("CREATE TABLE schema_version (version INTEGER NOT NULL);")
    for target in range(version + 1, latest + 1):
        steps.append(MIGRATIONS[target])
        steps.append(f"INSERT INTO schema_version VALUES ({target});")
    try:
        connection.executescript("BEGIN;\n" + "\n".join(steps) + "\nCOMMIT;")
    except sqlite3.Error:
        if connection.in_transaction:
            connection.rollback()
        raise
