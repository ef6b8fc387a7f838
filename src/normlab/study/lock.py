"""One driver per output folder: an exclusive ``flock`` on ``OUT/normlab.lock``.

Why an OS lock rather than a lease with a heartbeat: the kernel releases a ``flock`` the moment
its process dies, SIGKILL and out-of-memory kills included, so a killed driver never blocks the
next one and no timeout has to guess whether a silent holder is dead or slow (a lease must
either wait out its expiry after a crash or risk two holders when a live driver stalls past it;
clock skew between hosts makes that worse). What it costs: the lock is only as good as the file
system's locking. Local file systems honor it; Linux NFS (v4, or v3 with lockd) maps ``flock``
to a server-side byte-range lock, so drivers on different hosts exclude each other too, but a
file system mounted without locking (``nolock``, some FUSE mounts) accepts it without excluding
anyone. The file holds the holder's host, process id, start time and command, which a refused
driver prints. The holder removes it before releasing the lock, so a finished or refused run
leaves no trace (a killed one leaves it, harmlessly: the next driver locks and reuses it); a
driver that locked a file just removed notices it by its inode and locks the new one.

The lock is an open file description, not inherited by spawned workers (Python opens files
non-inheritable), so a worker that outlives its driver never holds the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from normlab.errors import NormlabError

LOCK_NAME = "normlab.lock"
ACQUIRE_SECONDS = 0.5
"""How long a driver retries a held lock before refusing (a reader's holder-details read, or a
holder that has locked but not yet written its details, takes microseconds)."""
_RETRY_SECONDS = 0.02

_HELD: dict[Path, int] = {}
"""Folders this process holds (resolved path -> lock file descriptor): holding is re-entrant, so
the CLI can hold the folder across a study and its report while ``run_study`` holds it too."""


def holder_details(folder: str | Path) -> str:
    """The last holder's details as one phrase (host, pid, start time, command), read without
    locking or writing; "unknown holder" when the lock file is missing or unreadable."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text(encoding="utf-8")
        holder = json.loads(text)
        return (
            f"host {holder['host']}, pid {holder['pid']}, started {holder['started']}, "
            f"command {holder['command']!r}"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown holder"


@contextlib.contextmanager
def hold_folder(folder: str | Path) -> Iterator[None]:
    """Hold ``folder`` (created if missing) for the driver's life; refuse at once, writing
    nothing, when another process holds it. Re-entrant within one process."""
    key = Path(folder).resolve()
    if key in _HELD:
        yield
        return
    refuse_if_held(folder)  # a held folder is refused before anything is created
    created = not key.exists()
    key.mkdir(parents=True, exist_ok=True)
    descriptor = _acquire(key)
    _HELD[key] = descriptor
    try:
        yield
    finally:
        del _HELD[key]
        # Unlink while still holding: a driver waiting on this file then sees it is gone.
        with contextlib.suppress(OSError):
            (key / LOCK_NAME).unlink()
        os.close(descriptor)  # releases the flock
        if created:  # refused before anything was written (bad data, no Ray head): no trace
            with contextlib.suppress(OSError):
                key.rmdir()


def refuse_if_held(folder: str | Path) -> None:
    """Raise :class:`NormlabError` naming the holder when another process holds ``folder``;
    opens nothing for writing and creates nothing."""
    path = Path(folder) / LOCK_NAME
    if Path(folder).resolve() in _HELD:
        return
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    except OSError as error:
        raise NormlabError(f"{path}: cannot read the lock file ({error.strerror})") from None
    try:
        if not _try_lock(descriptor, fcntl.LOCK_SH):
            raise _held_error(folder)
    finally:
        os.close(descriptor)  # also drops the shared lock at once


def _acquire(folder: Path) -> int:
    path = folder / LOCK_NAME
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the last holder removed the folder it had created
            folder.mkdir(parents=True, exist_ok=True)
            continue
        if not _try_lock(descriptor, fcntl.LOCK_EX):
            os.close(descriptor)
            raise _held_error(folder)
        try:
            unlinked = os.stat(path).st_ino != os.fstat(descriptor).st_ino
        except FileNotFoundError:
            unlinked = True
        if not unlinked:
            break
        os.close(descriptor)  # locked a file its last holder removed: lock the current one
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": _command(),
    }
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(holder).encode(), 0)
    return descriptor


def _command() -> str:
    """This process's command line as a user would type it (``python -m normlab.cli`` and the
    console script both read ``normlab``)."""
    if not sys.argv:
        return ""
    name = Path(sys.argv[0]).name
    return shlex.join(["normlab" if name in ("cli.py", "__main__.py") else name, *sys.argv[1:]])


def _try_lock(descriptor: int, kind: int) -> bool:
    """Lock without blocking, retrying for :data:`ACQUIRE_SECONDS`; whether it was obtained."""
    deadline = time.monotonic() + ACQUIRE_SECONDS
    while True:
        try:
            fcntl.flock(descriptor, kind | fcntl.LOCK_NB)
            return True
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise NormlabError(f"cannot lock the output folder: {error.strerror}") from None
        if time.monotonic() >= deadline:
            return False
        time.sleep(_RETRY_SECONDS)


def _held_error(folder: str | Path) -> NormlabError:
    return NormlabError(
        f"{folder} is in use by another normlab driver ({holder_details(folder)}); wait for it "
        "to finish, or use another --out (normlab report and export work meanwhile)"
    )
