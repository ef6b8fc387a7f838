"""Tar archives read defensively: the format told from magic bytes (no header parsing), header
and member sizes bounded before tarfile or memory sees them, and the compressed stream checked
to its end.

- Detection (:func:`archive_kind`) reads the first 512 bytes: gzip, bzip2 and xz magic, or a tar
  header (``ustar`` magic, or a valid v7 checksum). ``tarfile.is_tarfile`` parses pax headers
  with the interpreter's regular expression, quadratic on crafted input before Python 3.11.10
  (CVE-2024-6232): a 1 MB pax header held it for minutes.
- Headers: pax and GNU long-name headers over :data:`MAX_HEADER_BYTES` are refused before they
  are parsed; sparse members (GNU or pax ``GNU.sparse.*``) are refused, since a sparse header
  declares a real size independent of the archive's (100 GiB of holes in 112 bytes) and no data
  format normlab reads uses them.
- Sizes: a member over :data:`MAX_MEMBER_BYTES`, or members adding up to more than
  :data:`MAX_ARCHIVE_BYTES`, are refused before they are read.
- Integrity: the stream is decompressed by Python's ``gzip``/``bz2``/``lzma`` modules, read to
  its end after the last member; each checks its CRC (and gzip the length) there, so a corrupt
  archive is refused instead of loading altered bytes.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from typing import IO

from normlab.errors import NormlabError

MAX_HEADER_BYTES = 64 << 10
"""Largest pax or GNU long-name header (names and metadata: a few hundred bytes in practice)."""
MAX_MEMBER_BYTES = 512 << 20
"""Largest member read (CIFAR-100's train batch is 155 MB)."""
MAX_ARCHIVE_BYTES = 2 << 30
"""Largest sum of member sizes (CIFAR-100 python unpacks to 178 MB): a gzip bomb stops here."""
MAX_TRAILING_BYTES = 16 << 20
"""Bytes read after the tar end marker to reach the compressed stream's end and its check."""

_MAGIC = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError)
"""What reading a damaged archive raises (gzip's CRC error is an OSError)."""


def archive_kind(path: str) -> str | None:
    """``"gz"``, ``"bz2"``, ``"xz"`` (compressed, assumed to hold a tar), ``"tar"``, or None,
    from the first 512 bytes only."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    if len(head) == 512 and head[257:262] == b"ustar":
        return "tar"
    if len(head) == 512 and head[148:156].strip(b" \x00").isdigit():  # v7 tar: checksum only
        unsigned = sum(head[:148]) + 8 * 32 + sum(head[156:])
        if int(head[148:156].strip(b" \x00"), 8) == unsigned:
            return "tar"
    return None


class BoundedTarInfo(tarfile.TarInfo):
    """``TarInfo`` that refuses oversized extended headers and sparse members before parsing."""

    def _proc_pax(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        _bound_header(self, "pax")
        member = super()._proc_pax(tarfile_)
        if member.sparse is not None:
            raise tarfile.HeaderError(f"sparse member {member.name!r} (GNU.sparse pax header)")
        return member

    def _proc_gnulong(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        _bound_header(self, "GNU long name")
        return super()._proc_gnulong(tarfile_)

    def _proc_sparse(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        raise tarfile.HeaderError(f"sparse member {self.name!r} (GNU sparse header)")


def _bound_header(info: tarfile.TarInfo, kind: str) -> None:
    if info.size > MAX_HEADER_BYTES:
        raise tarfile.HeaderError(
            f"{kind} header of {info.size:,} bytes (more than {MAX_HEADER_BYTES:,})"
        )


@contextlib.contextmanager
def tar_members(path: str) -> Iterator[Iterator[tuple[tarfile.TarInfo, IO[bytes]]]]:
    """Stream the regular-file members of the tar at ``path``: ``(member, reader)`` pairs, the
    reader valid until the next member. Every problem is a :class:`NormlabError` naming
    ``path``; leaving the block after a full iteration checks the stream's integrity."""
    kind = archive_kind(path)
    if kind is None:
        raise NormlabError(f"{path}: not a tar archive (plain, .gz, .bz2 or .xz)")
    try:
        with (
            open(path, "rb") as raw,
            _decompressed(kind, raw) as stream,
            tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo) as archive,
        ):
            finished: list[bool] = []
            yield _members(path, archive, finished)
            if finished:
                _read_to_end(path, stream)
    except NormlabError:
        raise
    except MemoryError:
        raise NormlabError(f"{path}: not enough memory to read the archive") from None
    except ARCHIVE_ERRORS as error:
        raise NormlabError(f"{path}: truncated or corrupt archive ({error})") from None


def _decompressed(kind: str, raw: IO[bytes]) -> contextlib.AbstractContextManager[IO[bytes]]:
    if kind == "gz":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if kind == "bz2":
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return contextlib.nullcontext(raw)


def _members(
    path: str, archive: tarfile.TarFile, finished: list[bool]
) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    total = 0
    for member in archive:
        total += max(member.size, 0)
        if member.size > MAX_MEMBER_BYTES or total > MAX_ARCHIVE_BYTES:
            raise NormlabError(
                f"{path}: member {member.name!r} of {member.size:,} bytes exceeds the limits "
                f"({MAX_MEMBER_BYTES:,} bytes a member, {MAX_ARCHIVE_BYTES:,} in all)"
            )
        if member.isfile():
            yield member, archive.extractfile(member)  # type: ignore[misc]
    finished.append(True)


def _read_to_end(path: str, stream: IO[bytes]) -> None:
    """Read what follows the tar end marker so that the decompressor checks its CRC."""
    left = MAX_TRAILING_BYTES
    while chunk := stream.read(1 << 20):
        left -= len(chunk)
        if left < 0:
            raise NormlabError(f"{path}: more than {MAX_TRAILING_BYTES:,} bytes after the archive")
