"""A study killed mid-way resumes to exactly its planned runs; Ctrl-C stops workers at once.

One run per unit of work here (``--pack off``); packs: ``test_kill_resume_packed.py``.

Both drive ``python -m normlab.cli study`` in a subprocess and watch the store read-only.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

SPEC = """
[study]
name = "kill"
seeds = [0, 1]

[run]
dataset = "synthetic"
dataset_options = {{ num_examples = {examples} }}
depth = 8
widths = [4, 4, 4]
epochs = {epochs}

[factors]
norm = ["bn", "none", "gn"]
batch_size = [4, 8]

[lr]
mode = "fixed"
base_lr = 0.02
"""
SHORT = 300
"""Examples of the studies that run to the end: each run still takes a good fraction of a
second (the kill lands with runs left to train), the whole study seconds, not tens of them."""
LONG = 1000
"""Examples of the studies interrupted while they train: with 50 epochs a run takes many
seconds."""


def start(spec: Path, out: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "normlab.cli", "study", str(spec), "--out", str(out), *args]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell job
        preexec_fn=_sigint_as_in_a_terminal,
    )


def _sigint_as_in_a_terminal() -> None:
    # A non-interactive shell starts background jobs with SIGINT ignored and Python keeps an
    # inherited SIG_IGN, so a test suite launched with `cmd &` would start a driver deaf to
    # Ctrl-C. A terminal's foreground job has the default disposition: give the driver that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def count(out: Path, status: str) -> int:
    """Runs with ``status``, read without writing (the study may be running)."""
    path = out / "normlab.db"
    if not path.exists():
        return 0
    db = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM runs WHERE status = ?", (status,)).fetchone()[0]
    except sqlite3.OperationalError:  # created but not yet migrated
        return 0
    finally:
        db.close()


def wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"study ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the study"
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def pool_workers(pid: int) -> list[int]:
    """Children of ``pid`` started by multiprocessing's spawn (not its resource tracker)."""
    found = []
    for child in children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


def ignores_sigint(pid: int) -> bool:
    """Whether ``pid`` has set SIGINT to be ignored (a pool worker after its initializer)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    (mask,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")]
    return bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkill_then_resume_trains_every_planned_run_exactly_once(tmp_path):
    spec, out = tmp_path / "kill.toml", tmp_path / "out"
    spec.write_text(SPEC.format(epochs=1, examples=SHORT))
    process = start(spec, out, "--workers", "1", "--threads", "1", "--pack", "off")
    wait_for(lambda: count(out, "done") >= 2, process)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    done_before = count(out, "done")
    assert 2 <= done_before < 12, "the study finished before it was killed"

    resumed = subprocess.run(
        [sys.executable, "-m", "normlab.cli", "study", str(spec), "--out", str(out)]
        + ["--workers", "1", "--threads", "1", "--pack", "off"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{12 - done_before} runs trained, {done_before} already finished" in resumed.stdout
    # Progress (per-run lines) on stderr, result table on stdout.
    assert resumed.stderr.count(" done ") == 12 - done_before
    assert "Recommendation:" in resumed.stdout and " done " not in resumed.stdout

    with sqlite3.connect(out / "normlab.db") as db:
        runs = db.execute("SELECT run_id, status, attempts FROM runs").fetchall()
        epochs = db.execute("SELECT run_id, COUNT(*) FROM epochs GROUP BY run_id").fetchall()
    db.close()
    assert len(runs) == len({run_id for run_id, _, _ in runs}) == 12
    assert {status for _, status, _ in runs} == {"done"}
    assert sorted(epochs) == sorted((run_id, 1) for run_id, _, _ in runs)  # one epoch each
    # One worker: only the run in flight at the kill was attempted twice.
    assert sorted(attempts for _, _, attempts in runs) in ([1] * 12, [1] * 11 + [2])
    assert not (out / "normlab.db-wal").exists()

    quiet = subprocess.run(
        [sys.executable, "-m", "normlab.cli", "study", str(spec), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "0 runs trained, 12 already finished" in quiet.stdout


def start_training_two_workers(tmp_path: Path) -> tuple[subprocess.Popen, Path, list[int]]:
    """A study of long runs on 2 workers, once both train: (driver, out dir, its children)."""
    spec, out = tmp_path / "long.toml", tmp_path / "out"
    spec.write_text(SPEC.format(epochs=50, examples=LONG))  # each run takes many seconds
    process = start(spec, out, "--workers", "2", "--threads", "1", "--pack", "off")
    wait_for(lambda: count(out, "running") == 2, process)

    # Runs are marked running when handed to the pool; wait until both workers are initialized
    # (ignoring SIGINT, so only the driver can stop them) and have started training.
    def initialized() -> bool:
        workers = pool_workers(process.pid)
        return len(workers) == 2 and all(ignores_sigint(pid) for pid in workers)

    wait_for(initialized, process)
    time.sleep(1.0)
    # The two pool workers and multiprocessing's resource tracker.
    return process, out, children(process.pid)


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """``pids`` still alive after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def test_ctrl_c_stops_both_workers_at_once_and_requeues_their_runs(tmp_path):
    process, out, workers = start_training_two_workers(tmp_path)
    interrupted = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, stderr = process.communicate(timeout=60)
    took = time.monotonic() - interrupted
    assert process.returncode == 130, stderr
    assert "interrupted; finished runs are kept" in stderr
    assert took < 10, f"took {took:.1f} s to stop"  # a run takes tens of seconds
    assert wait_gone(workers) == []
    assert count(out, "pending") == 12 and count(out, "running") == 0


def test_workers_of_a_killed_driver_exit_instead_of_lingering(tmp_path):
    process, out, workers = start_training_two_workers(tmp_path)
    process.kill()
    process.communicate()
    assert wait_gone(workers) == []  # not after their runs (tens of seconds), and not never
    assert count(out, "running") == 2  # retried on resume
