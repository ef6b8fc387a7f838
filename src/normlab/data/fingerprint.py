"""Fingerprints of the data files a dataset was read from, to refuse resuming on changed data.

Every file source records ``(path, size in bytes, sha256 hex)`` of each file it read in
:attr:`Dataset.files`. :func:`data_fingerprint` condenses them into one short hash that enters a
run's identity; :func:`changed_files` says which files differ between a recorded list and the
current one, so that a resume can name the file that changed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence

from normlab.errors import NormlabError

from .datasets import Dataset

HASH_CHUNK_BYTES = 1 << 20
"""Bytes hashed at a time: a 170 MB archive is streamed, never held in memory for hashing."""

FINGERPRINT_LENGTH = 16
"""Hex digits of :func:`data_fingerprint` (64 bits: collisions are not a practical concern)."""

FileRecord = tuple[str, int, str]


def file_record(path: str | os.PathLike[str]) -> FileRecord:
    """(absolute path, size in bytes, sha256 hex) of one file, hashed in chunks."""
    path = os.path.abspath(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as error:
        raise NormlabError(f"{path}: cannot read: {error.strerror or error}") from None
    return path, os.path.getsize(path), digest.hexdigest()


def file_records(paths: Iterable[str | os.PathLike[str]]) -> tuple[FileRecord, ...]:
    """:func:`file_record` of every path, sorted by path."""
    return tuple(sorted(file_record(path) for path in paths))


def current_records(recorded: Iterable[Sequence[object]]) -> tuple[FileRecord, ...]:
    """Re-hash the recorded files that still exist (for :func:`changed_files` on resume)."""
    paths = [str(record[0]) for record in recorded]
    return file_records(path for path in paths if os.path.isfile(path))


def data_fingerprint(dataset: Dataset | Sequence[Sequence[object]]) -> str:
    """Short stable hash of a dataset's files; ``""`` for built-ins (no files).

    sha256 over the sorted lines ``relative path, size, sha256`` where paths are relative to the
    folder holding all the files: moving a data folder keeps its fingerprint, renaming or
    changing any file inside it changes it. Accepts a :class:`Dataset` or its ``files``.
    """
    files = _normalize(dataset.files if isinstance(dataset, Dataset) else dataset)
    if not files:
        return ""
    root = os.path.commonpath([os.path.dirname(path) for path, _, _ in files])
    lines = sorted(f"{os.path.relpath(path, root)}\t{size}\t{sha}" for path, size, sha in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:FINGERPRINT_LENGTH]


def changed_files(
    recorded: Sequence[Sequence[object]], current: Sequence[Sequence[object]]
) -> list[str]:
    """Paths whose size or hash differ, that vanished, or that appeared, sorted.

    ``recorded`` and ``current`` are ``Dataset.files`` lists (tuples, or the lists a JSON round
    trip makes of them). A file that appeared in a folder source changes the data as much as one
    that vanished, so it is named too.
    """
    before = {path: (size, sha) for path, size, sha in _normalize(recorded)}
    after = {path: (size, sha) for path, size, sha in _normalize(current)}
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


def _normalize(files: Iterable[Sequence[object]]) -> tuple[FileRecord, ...]:
    return tuple(sorted((str(path), int(size), str(sha)) for path, size, sha in files))  # type: ignore[call-overload]
